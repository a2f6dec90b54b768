"""SCL + RSG + LDAM recipes (arXiv 2501.13756): one stage, trained end to end.

No code has been published, and only the opening of the full text could be read (see
:mod:`ltzoo.methods.scl_rsg_ldam`), so its hyper-parameters are unchecked. The schedule of each entry is RSG's official
one for that dataset (the combination's classifier side is LDAM-DRW-RSG), the SupCon side uses
SupContrast's CIFAR values (tau 0.1, 128-d Linear-ReLU-Linear head), and the combination choices
are listed in :data:`SYNERGY_NOTES` (stored in every recipe's ``notes`` and so in the model card).
:func:`synergy_variant` builds the ablations (one part removed, or generated features in SupCon).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ltzoo.recipe import Recipe
from ltzoo.recipes.ldam_drw import COSINE_HEAD, cifar_stage, fmnist_schedule_text, fmnist_stage, imagenet_lt_stage
from ltzoo.recipes.rsg import CIFAR_RSG, RSG_CIFAR_MILESTONES, RSG_COMMON
from ltzoo.recipes.scl import SMALL_VIEW, SUPCON_CIFAR
from ltzoo.registry import register_recipes

PAPER = (
    "Solving the long-tailed distribution problem by exploiting the synergies and balance of different "
    "techniques (Wang, Lassila, Ali; arXiv 2501.13756)"
)

COMBINATION: dict[str, Any] = {
    "use_rsg": True,
    "cls_weight": 1.0,
    "supcon_weight": 0.5,
    "generated_in_supcon": False,
    "second_view": "supcon",
}

SYNERGY_NOTES = (
    "No code has been published. The full text (arxiv.org/html/2501.13756v1) is indexed, but only its opening "
    "(authors, abstract, start of the introduction) could be read, not the method or experiment sections: "
    "its loss weights, schedule and numbers are unchecked, none is quoted, and every choice below is ltzoo's. "
    "One stage, one "
    "backbone: RSG (official module and weights 0.1 CESC / 0.01 MV, 15 centres, head ratio 0.2) on view 1's "
    "feature map after stage rsg_after_stage; the LDAM cosine classifier (official max_m / s) with DRW "
    "(beta 0.9999) on view 1 plus RSG's generated tail maps with the expanded targets; SupCon (tau 0.1, "
    "128-d Linear-ReLU-Linear projection head on pooled features, training only) on view 1 (standard "
    "augmentation) and view 2 (SupContrast augmentation). Generated features enter the classification loss "
    "only (generated_in_supcon=False). Loss = 1.0 LDAM + 0.5 SupCon + 0.1 CESC + 0.01 MV (weights not "
    "tuned). Generation and DRW start at the same epoch (RSG's CIFAR alignment, 80% of the stage). "
    "Switches in method_args: use_rsg, supcon_weight (0 = no SCL), max_m (0 = no LDAM margins), "
    "generated_in_supcon, second_view."
)


def _args(ldam_rsg: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {**ldam_rsg, **SUPCON_CIFAR, **COMBINATION, **overrides}


def synergy_cifar(dataset: str) -> Recipe:
    return Recipe(
        method="scl_rsg_ldam",
        arch="resnet32",
        dataset=dataset,
        stages=[cifar_stage(RSG_CIFAR_MILESTONES)],
        head=dict(COSINE_HEAD),
        method_args=_args(CIFAR_RSG),
        notes=SYNERGY_NOTES + " Schedule: Jianf-Wang/RSG cifar_train.py (200 epochs, batch 128, lr 0.1, wd 2e-4, "
        "warmup 5, x0.01 at 159, x1e-4 at 179; generation and DRW from epoch 160).",
    )


def synergy_fmnist() -> Recipe:
    stage = fmnist_stage(RSG_CIFAR_MILESTONES)
    return Recipe(
        method="scl_rsg_ldam",
        arch="resnet32",
        dataset="fmnist_lt",
        stages=[stage],
        # The SupCon view's RandomResizedCrop of scale 0.8-1, as SCL's and DSCL's fmnist_lt views: chosen on val
        # (benchmarks/results/recipe_sweep.md: 77.8 -> 78.0, a margin inside one seed's noise; the view that won
        # clearly for SCL, DSCL and DSCL + PBSD).
        head=dict(COSINE_HEAD),
        method_args=_args(CIFAR_RSG, **SMALL_VIEW),
        notes=SYNERGY_NOTES + f" CPU scale: RSG's CIFAR recipe with {fmnist_schedule_text(stage)}. Each step runs "
        "two views, so a step costs about twice a CE step at the same epoch budget. The SupCon view is a "
        "RandomResizedCrop of scale 0.8-1, not 0.2-1 (chosen on val: benchmarks/results/recipe_sweep.md).",
    )


def synergy_imagenet_lt(arch: str) -> Recipe:
    ldam_rsg = {
        **RSG_COMMON,
        "rsg_after_stage": 3,
        "rsg_start_fraction": 0.8,
        "max_m": 0.3,
        "s": 30.0,
        "drw_start_fraction": 0.8,
        "drw_beta": 0.9999,
        "drs_start_fraction": None,
    }
    return Recipe(
        method="scl_rsg_ldam",
        arch=arch,
        dataset="imagenet_lt",
        stages=[imagenet_lt_stage()],
        head=dict(COSINE_HEAD),
        method_args=_args(ldam_rsg),
        notes=SYNERGY_NOTES + " Schedule and LDAM values: Jianf-Wang/RSG imagenet_lt_train.py (100 epochs, batch "
        "256, lr 0.1, wd 2e-4, RSG after layer3, max_m 0.3, s 30), with DRW from epoch 80 instead of its "
        "re-sampling, since the combination is defined with DRW.",
    )


def synergy_variant(recipe: Recipe, **method_args: Any) -> Recipe:
    """The same recipe with some ``method_args`` changed (for ablations); the notes say which."""
    changed = ", ".join(f"{k}={v!r}" for k, v in sorted(method_args.items()))
    return recipe.replace(
        method_args={**recipe.method_args, **method_args}, notes=f"{recipe.notes} Ablation variant: {changed}."
    )


# The first tag of an arch is its default (timm's rule).
register_recipes(
    "scl_rsg_ldam",
    {
        "resnet32.cifar100_lt": partial(synergy_cifar, "cifar100_lt"),
        "resnet32.cifar10_lt": partial(synergy_cifar, "cifar10_lt"),
        "resnet32.fmnist_lt": synergy_fmnist,
        "resnet50.imagenet_lt": partial(synergy_imagenet_lt, "resnet50"),
        "resnext50_32x4d.imagenet_lt": partial(synergy_imagenet_lt, "resnext50_32x4d"),
    },
    paper=PAPER,
)
