"""Publishing to the Hugging Face Hub: a run (weights, config, card, plots, ONNX graphs) in one commit
(:mod:`~ltzoo.publish.push`), its model card (:mod:`~ltzoo.publish.card`) and pictures
(:mod:`~ltzoo.publish.plot`), and the whole zoo with its pins (:mod:`~ltzoo.publish.zoo`)."""
