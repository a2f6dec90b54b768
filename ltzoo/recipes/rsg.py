"""RSG recipes (Jianf-Wang/RSG): LDAM-DRW-RSG on CIFAR-LT / fmnist_lt, LDAM-DRS-RSG on the large sets.

Settings per dataset (``reference/methods.md`` 4.2, from the official train scripts):

| | backbone | RSG after | epochs / epoch_thresh | classifier loss | lr / wd / batch |
|---|---|---|---|---|---|
| CIFAR | ResNet-32 | layer2 | 200 / 159 | LDAM(0.5, 30) + DRW from 160 | 0.1 / 2e-4 / 128 |
| ImageNet-LT | ResNeXt-50 (and ResNet-50) | layer3 | 100 / 79 | LDAM(0.3, 30) + DRS from 80 | 0.1 / 2e-4 / 256 |
| iNat18 | ResNet-50 | layer3 | 180 / 139 | LDAM(0.1, 50) + DRS from 140 | 0.1 / 5e-5 / 256 |
| Places-LT | ResNet-152 | layer3 | 30 / 9 | LDAM(0.2, 50) + DRS from 10 | 0.01 / 1e-4 / 256 |

``rsg_start_fraction`` / ``drw_start_fraction`` / ``drs_start_fraction`` are those epochs as fractions
of the stage, so ``--epochs`` rescaling moves them with the schedule.

DRS is the official scripts' switch (``if epoch == 80: train_sampler = ImbalancedDatasetSampler(...)``)
to ``utils.py``'s ``ImbalancedDatasetSampler``: with replacement, each sample weighted
(1 - beta) / (1 - beta^n_c) with beta 0.9999, so class c is drawn with probability proportional to
n_c (1 - beta) / (1 - beta^n_c). That is close to, but not, class-balanced: ImageNet-LT's largest
class (1,280 images) is drawn 6.5 % more often than a 1-image class, Places-LT's (4,980) 27 % more.
ltzoo's ``drs_sampler="effective_number"`` is that sampler (:mod:`ltzoo.data.samplers`).
The CIFAR script uses DRW, not DRS (``--train_rule DRW``), so the CIFAR and fmnist_lt recipes never
re-sample.

Departure of the ImageNet-size entries: their timm backbones zero the last BN weight of each residual
block (timm's ``zero_init_last=True``); the official ``models/resnet.py`` has
``zero_init_residual=False``. ltzoo keeps timm's default (one model builder for every method; making it
a per-recipe switch would put a new key into every saved config). The CIFAR ResNet-32 matches the
official ``resnet_cifar.py`` (Kaiming init, no zero-init).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ltzoo.recipe import DataSize, MethodKnob, Recipe, StageConfig, declare_method_knob
from ltzoo.recipes.ldam_drw import COSINE_HEAD, cifar_stage, fmnist_schedule_text, fmnist_stage, imagenet_lt_stage
from ltzoo.registry import register_recipes

PAPER = "RSG: A Simple but Effective Module for Learning Imbalanced Datasets (Wang et al., CVPR 2021)"

# Official RSG values shared by every script: 15 centres, a 256-wide contrastive module, strength 1,
# head classes = the most frequent 20% (--head_tail_ratio 0.2), loss weights 0.1 (CESC) / 0.01 (MV).
RSG_COMMON: dict[str, Any] = {
    "n_center": 15,
    "contrastive_dim": 256,
    "transfer_strength": 1.0,
    "head_ratio": 0.2,
    "cesc_weight": 0.1,
    "mv_weight": 0.01,
}
# CIFAR: generation from epoch 160 of 200 (epoch_thresh 159) and DRW from 160; RSG after layer2.
CIFAR_RSG: dict[str, Any] = {
    **RSG_COMMON,
    "rsg_after_stage": 2,
    "rsg_start_fraction": 0.8,
    "max_m": 0.5,
    "s": 30.0,
    "drw_start_fraction": 0.8,
    "drw_beta": 0.9999,
    "drs_start_fraction": None,
}
# cifar_train.py's adjust_learning_rate sets ``epoch = epoch + 1`` and then drops the lr x0.01 when
# ``epoch > 159`` and x1e-4 when ``epoch > 179``: from 0-indexed epochs 159 and 179. ltzoo's step
# schedule drops at ``epoch >= milestone`` (0-indexed), hence (159, 179), one epoch before LDAM-DRW's
# (160, 180) from ``epoch + 1 > 160 / 180``. tests/test_rsg.py checks every RSG schedule epoch by epoch
# against the official function. (Compressed to fmnist_lt's 120 epochs: 95 / 107, and LDAM-DRW's 96 / 108.)
RSG_CIFAR_MILESTONES = (159, 179)
# Top-1 reported for LDAM-DRW/DRS + RSG, as listed by aggregators (GZWQ/Awesome-Long-Tailed; ImageNet-LT:
# PapersWithCode, see reference/methods.md 4.2); the paper's own tables were not re-read.
REPORTED_TOP1 = {"cifar10_lt": 79.95, "cifar100_lt": 44.55, "imagenet_lt": 51.8, "inat2018": 70.26, "places_lt": 39.3}


def derived_head_ratio(size: DataSize) -> float:
    """On other data: the official ratio (the most frequent 20% of classes are the head), raised to one class
    when C < 5 (and at most C - 1), since RSG needs at least one head and one tail class."""
    official, classes = RSG_COMMON["head_ratio"], size.num_classes
    if 1 <= int(classes * official) <= classes - 1:
        return official
    head = min(max(int(classes * official), 1), classes - 1)
    ratio = head / classes
    # RSG takes int(C * ratio) classes: make sure float rounding cannot lose the one we meant.
    return ratio if int(classes * ratio) == head else (head + 1e-6) / classes


declare_method_knob(
    MethodKnob(
        arg="head_ratio",
        option="--head-ratio",
        type=float,
        methods="RSG",
        what="fraction of classes that are head",
        rule=f"the official {RSG_COMMON['head_ratio']}, at least one head class and one tail class",
        derive=derived_head_ratio,
        valid=lambda value: 0 < value < 1,
        valid_range="must be in (0, 1)",
    )
)


def reported_text(dataset: str) -> str:
    return f" Reported top-1 (aggregator listing of the paper's result): {REPORTED_TOP1[dataset]}."


# The ImageNet-size entries' one departure in model construction (see the module docstring).
ZERO_INIT_NOTE = " Departure: timm's zero_init_last (official models/resnet.py: zero_init_residual=False)."


def _drs_args(max_m: float, s: float, start: float) -> dict[str, Any]:
    """The large-dataset scripts: RSG after layer3, LDAM with uniform weights, deferred re-sampling
    (DRS) from the same epoch as generation with the official ``ImbalancedDatasetSampler``
    (``utils.py``: with replacement, effective-number weights, beta 0.9999; not uniform over classes)."""
    return {
        **RSG_COMMON,
        "rsg_after_stage": 3,
        "rsg_start_fraction": start,
        "max_m": max_m,
        "s": s,
        "drw_start_fraction": None,
        "drw_beta": 0.9999,
        "drs_start_fraction": start,
        "drs_sampler": "effective_number",
    }


def rsg_cifar(dataset: str) -> Recipe:
    return Recipe(
        method="rsg",
        arch="resnet32",
        dataset=dataset,
        stages=[cifar_stage(RSG_CIFAR_MILESTONES)],
        head=dict(COSINE_HEAD),
        method_args=dict(CIFAR_RSG),
        notes="Jianf-Wang/RSG cifar_train.py --loss_type LDAM --train_rule DRW: RSG after layer2, epoch_thresh 159, "
        "LDAM 0.5/30 + DRW 0.9999 from epoch 160, lr x0.01 from epoch 159 and x1e-4 from 179 (0-indexed; the "
        "script's epoch + 1 > 159 / > 179), loss + 0.1 CESC + 0.01 MV. "
        "ltzoo selects on val (the official CIFAR code on test)." + reported_text(dataset),
    )


def rsg_fmnist() -> Recipe:
    stage = fmnist_stage(RSG_CIFAR_MILESTONES)
    return Recipe(
        method="rsg",
        arch="resnet32",
        dataset="fmnist_lt",
        stages=[stage],
        head=dict(COSINE_HEAD),
        method_args=dict(CIFAR_RSG),
        notes="ltzoo's CPU scale: the official CIFAR recipe (generation and DRW from 80% of the stage) with "
        f"{fmnist_schedule_text(stage)}; RSG after stage 2 (32 x 14 x 14 maps at 28 px).",
    )


def rsg_imagenet_lt(arch: str) -> Recipe:
    official = arch == "resnext50_32x4d"
    return Recipe(
        method="rsg",
        arch=arch,
        dataset="imagenet_lt",
        stages=[imagenet_lt_stage()],
        head=dict(COSINE_HEAD),
        method_args=_drs_args(max_m=0.3, s=30.0, start=0.8),
        notes="Jianf-Wang/RSG imagenet_lt_train.py: LDAM-DRS-RSG, RSG after layer3, epoch_thresh 79, LDAM 0.3/30 "
        "with uniform weights, from epoch 80 re-sampling with the official ImbalancedDatasetSampler (with "
        "replacement, class probability proportional to n(1-beta)/(1-beta^n), beta 0.9999)."
        + (
            ""
            if official
            else " The official script trains ResNeXt-50-32x4d; this ResNet-50 entry uses the "
            "same settings (ltzoo's choice)."
        )
        + ZERO_INIT_NOTE
        + (reported_text("imagenet_lt") if official else ""),
    )


def rsg_inat2018() -> Recipe:
    stage = StageConfig(
        epochs=180,
        batch_size=256,
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-5,
        warmup_epochs=5,
        schedule="step",
        milestones=(99, 139, 169),
        gamma=0.1,
    )
    return Recipe(
        method="rsg",
        arch="resnet50",
        dataset="inat2018",
        stages=[stage],
        head=dict(COSINE_HEAD),
        method_args=_drs_args(max_m=0.1, s=50.0, start=140 / 180),
        notes="Jianf-Wang/RSG inaturalist_train.py: LDAM-DRS-RSG, RSG after layer3, epoch_thresh 139, LDAM 0.1/50, "
        "from epoch 140 re-sampling with the official effective-number ImbalancedDatasetSampler (beta 0.9999), "
        "lr x0.1 at 99, 139, 169." + ZERO_INIT_NOTE + reported_text("inat2018"),
    )


def rsg_places_lt() -> Recipe:
    stage = StageConfig(
        epochs=30,
        batch_size=256,
        lr=0.01,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="step",
        milestones=(9, 19),
        gamma=0.1,
    )
    return Recipe(
        method="rsg",
        arch="resnet152",
        dataset="places_lt",
        stages=[stage],
        head=dict(COSINE_HEAD),
        method_args=_drs_args(max_m=0.2, s=50.0, start=10 / 30),
        notes="Jianf-Wang/RSG places_train.py: LDAM-DRS-RSG on ResNet-152, RSG after layer3, epoch_thresh 9, "
        "LDAM 0.2/50, from epoch 10 re-sampling with the official effective-number ImbalancedDatasetSampler "
        "(beta 0.9999), lr 0.01 x0.1 at 9 and 19. Departure: the official script starts "
        "from ImageNet-pretrained weights; ltzoo never downloads timm weights, so this recipe starts from random "
        "init and will not reach the paper's numbers without a pretrained model passed to the trainer."
        + ZERO_INIT_NOTE
        + reported_text("places_lt"),
    )


# The first tag of an arch is its default (timm's rule).
register_recipes(
    "rsg",
    {
        "resnet32.cifar100_lt": partial(rsg_cifar, "cifar100_lt"),
        "resnet32.cifar10_lt": partial(rsg_cifar, "cifar10_lt"),
        "resnet32.fmnist_lt": rsg_fmnist,
        "resnext50_32x4d.imagenet_lt": partial(rsg_imagenet_lt, "resnext50_32x4d"),
        "resnet50.imagenet_lt": partial(rsg_imagenet_lt, "resnet50"),
        "resnet50.inat2018": rsg_inat2018,
        "resnet152.places_lt": rsg_places_lt,
    },
    paper=PAPER,
)
