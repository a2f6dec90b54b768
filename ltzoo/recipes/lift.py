"""LIFT recipes: ``lift_<arch>.imagenet_lt`` for a pretrained backbone, fine-tuned lightly (arXiv 2309.10019).

The official IN21K ViT-B/16 recipe (shijxcs/LIFT ``configs/model/in21k_vit_b16_peft.yaml``): 10 epochs, batch
128, SGD lr 0.01, momentum 0.9, weight decay 5e-4, cosine schedule, a cosine classifier of scale 30 initialised
with the class means, the logit-adjusted loss. LIFT needs a pretrained backbone: train it with ``--init`` (a timm
checkpoint, ``timm:NAME``, or an ltzoo run); on your own data (``--data``) the settings are derived as for every
recipe, and the run takes the ``--init`` model's architecture. Where ltzoo departs from the official code:
:mod:`ltzoo.methods.lift`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ltzoo.recipe import Recipe, StageConfig
from ltzoo.registry import register_recipes

PAPER = "Shi et al., Long-Tail Learning with Foundation Model: Heavy Fine-Tuning Hurts (ICML 2024, arXiv 2309.10019)"
# Every LIFT hyper-parameter the objective reads (ltzoo.methods.lift), with the official values.
DEFAULT_ARGS: dict[str, Any] = {
    "la_tau": 1.0,  # the logit-adjusted loss: cross-entropy on logits + la_tau * log(training prior)
    "init_head": "class_mean",  # "class_mean" (official) or "random"
}
COSINE_SCALE = 30.0  # models/classifiers.py CosineClassifier(scale=30)


def lift_imagenet_lt(arch: str) -> Recipe:
    stage = StageConfig(
        name="main",
        epochs=10,
        batch_size=128,
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        schedule="cosine",
        sampler="instance",
        train="last:1",  # ltzoo's lightweight part: the last stage / block (the official code adds AdaptFormer)
    )
    return Recipe(
        method="lift",
        arch=arch,
        dataset="imagenet_lt",
        stages=[stage],
        head={"type": "cosine", "scale": COSINE_SCALE},
        method_args=dict(DEFAULT_ARGS),
        notes=(
            "The official IN21K ViT-B/16 recipe (10 epochs, batch 128, lr 0.01, wd 5e-4, cosine; cosine classifier of "
            "scale 30 initialised with class means; logit-adjusted loss). Needs --init with a pretrained backbone. "
            "ltzoo trains the backbone's last stage or block instead of AdaptFormer adapters, and has no CLIP text "
            "initialisation or test-time ensemble."
        ),
    )


register_recipes(
    "lift",
    {
        f"{arch}.imagenet_lt": partial(lift_imagenet_lt, arch)
        for arch in ("vit_small_patch16_224", "resnet50", "convnext_tiny")
    },
    paper=PAPER,
)
