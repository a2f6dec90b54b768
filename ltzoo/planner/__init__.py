"""What ``ltzoo train`` hands the trainer: the plan (:mod:`~ltzoo.planner.plan`) of a zoo recipe on its own
dataset or on the user's, with the settings derived from the data's size (:mod:`~ltzoo.planner.derived`) and,
with ``--init``, a parent model to fine-tune (:mod:`~ltzoo.planner.finetune`). It sits above the engine: it
decides what to train, the engine trains it."""
