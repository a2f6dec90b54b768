"""LDAM-DRW recipes: ``ldam_drw_resnet32`` (CIFAR-10/100-LT, fmnist_lt) and ImageNet-LT ResNet(X)-50.

CIFAR follows kaidic/LDAM-DRW ``cifar_train.py`` exactly; fmnist_lt is the same schedule compressed
to the CE recipe's epoch budget; ImageNet-LT has no official LDAM-DRW code, so it borrows the
schedule and LDAM values of RSG's ImageNet-LT script (see the notes of each recipe).

The schedule builders here are shared by the RSG and SCL+RSG+LDAM recipes.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ltzoo.recipe import Recipe, StageConfig, scale_stages
from ltzoo.recipes.ce import FMNIST_BATCH, FMNIST_EPOCHS
from ltzoo.registry import register_recipes

PAPER = "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss (Cao et al., NeurIPS 2019)"
COSINE_HEAD: dict[str, Any] = {"type": "cosine"}
CIFAR_LDAM = {"max_m": 0.5, "s": 30.0, "drw_start_fraction": 0.8, "drw_beta": 0.9999, "drs_start_fraction": None}


def cifar_stage(milestones: tuple[int, ...] = (160, 180)) -> StageConfig:
    """kaidic/LDAM-DRW ``cifar_train.py``: 200 epochs, batch 128, SGD 0.9, wd 2e-4, lr 0.1, 5 warmup
    epochs, lr x0.01 from epoch 160 and x1e-4 from 180 (0-indexed; the code's ``epoch + 1 > 160``)."""
    return StageConfig(
        epochs=200,
        batch_size=128,
        lr=0.1,
        momentum=0.9,
        weight_decay=2e-4,
        warmup_epochs=5,
        schedule="step",
        milestones=milestones,
        gamma=0.01,
    )


def fmnist_stage(milestones: tuple[int, ...] = (160, 180)) -> StageConfig:
    """The CIFAR schedule compressed to the shared fmnist_lt budget (at 120 epochs: warmup 3, milestones
    96 and 108) at the CE recipe's batch, the lr scaled linearly with the batch (as the CE recipe does:
    0.1 at 128)."""
    (stage,) = scale_stages([cifar_stage(milestones)], FMNIST_EPOCHS)
    stage.lr = stage.lr * FMNIST_BATCH / stage.batch_size
    stage.batch_size = FMNIST_BATCH
    return stage


def fmnist_schedule_text(stage: StageConfig) -> str:
    """How :func:`fmnist_stage` compressed the official schedule, for a recipe's notes."""
    drops = ", ".join(f"x{stage.gamma ** (i + 1):g} at {m}" for i, m in enumerate(stage.milestones))
    return (
        f"the step schedule compressed to the CE recipe's {stage.epochs} epochs (warmup {stage.warmup_epochs}, lr "
        f"{drops}) at batch {stage.batch_size} with lr {stage.lr:g} (0.1 at 128, scaled linearly)"
    )


def imagenet_lt_stage() -> StageConfig:
    """Jianf-Wang/RSG ``imagenet_lt_train.py``: 100 epochs, batch 256, lr 0.1, wd 2e-4, 5 warmup
    epochs, lr x0.1 from epoch 59, x0.01 from 79, x0.001 from 94 (0-indexed)."""
    return StageConfig(
        epochs=100,
        batch_size=256,
        lr=0.1,
        momentum=0.9,
        weight_decay=2e-4,
        warmup_epochs=5,
        schedule="step",
        milestones=(59, 79, 94),
        gamma=0.1,
    )


def ldam_drw_cifar(dataset: str) -> Recipe:
    return Recipe(
        method="ldam_drw",
        arch="resnet32",
        dataset=dataset,
        stages=[cifar_stage()],
        head=dict(COSINE_HEAD),
        method_args=dict(CIFAR_LDAM),
        notes="kaidic/LDAM-DRW cifar_train.py (--loss_type LDAM --train_rule DRW): LDAM max_m 0.5, s 30, cosine "
        "(NormedLinear) head, DRW beta 0.9999 from epoch 160 of 200; ltzoo selects on val (the official code on test).",
    )


def ldam_drw_fmnist() -> Recipe:
    stage = fmnist_stage()
    return Recipe(
        method="ldam_drw",
        arch="resnet32",
        dataset="fmnist_lt",
        stages=[stage],
        head=dict(COSINE_HEAD),
        method_args=dict(CIFAR_LDAM),
        notes="ltzoo's CPU scale: the official CIFAR recipe (LDAM 0.5/30, DRW beta 0.9999 from 80% of the stage) "
        f"with {fmnist_schedule_text(stage)}.",
    )


def ldam_drw_imagenet_lt(arch: str) -> Recipe:
    return Recipe(
        method="ldam_drw",
        arch=arch,
        dataset="imagenet_lt",
        stages=[imagenet_lt_stage()],
        head=dict(COSINE_HEAD),
        method_args={**CIFAR_LDAM, "max_m": 0.3},
        notes="No official LDAM-DRW ImageNet-LT code exists (kaidic/LDAM-DRW has CIFAR only; iNat code was never "
        "released). ltzoo's choice: the schedule and LDAM values (max_m 0.3, s 30) of Jianf-Wang/RSG "
        "imagenet_lt_train.py, with DRW (beta 0.9999) instead of its re-sampling, from epoch 80 of 100.",
    )


# The first tag of an arch is its default (timm's rule).
register_recipes(
    "ldam_drw",
    {
        "resnet32.cifar100_lt": partial(ldam_drw_cifar, "cifar100_lt"),
        "resnet32.cifar10_lt": partial(ldam_drw_cifar, "cifar10_lt"),
        "resnet32.fmnist_lt": ldam_drw_fmnist,
        "resnet50.imagenet_lt": partial(ldam_drw_imagenet_lt, "resnet50"),
        "resnext50_32x4d.imagenet_lt": partial(ldam_drw_imagenet_lt, "resnext50_32x4d"),
    },
    paper=PAPER,
)
