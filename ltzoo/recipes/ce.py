"""CE baseline (ERM): plain cross-entropy with instance sampling. The reference row of every table.

The shared fmnist_lt budget (``FMNIST_EPOCHS``, ``FMNIST_BATCH``) is what every method's fmnist_lt
recipe spends in total, so the benchmark compares methods at the same epoch budget. The fmnist_lt recipes
are written at ``FMNIST_DESIGN_EPOCHS`` (their stage splits, warm-ups and milestones) and spread over
``FMNIST_EPOCHS`` in proportion by :func:`fmnist_budget`.
"""

from __future__ import annotations

from functools import partial

from ltzoo.recipe import Recipe, StageConfig, scale_stages
from ltzoo.registry import register_recipes

# The shared budget: where CE's val top-1 stops rising by more than its seed spread (30 / 60 / 90 / 120 / 200
# epochs trained, benchmarks/results/ce_budget.md). At 30, the earlier budget, CE was 6 points short.
FMNIST_EPOCHS = 120
# The budget the fmnist_lt recipes are written at; fmnist_budget() spreads them over FMNIST_EPOCHS.
FMNIST_DESIGN_EPOCHS = 30
FMNIST_BATCH = 64


def fmnist_budget(stages: list[StageConfig]) -> list[StageConfig]:
    """``stages`` written at ``FMNIST_DESIGN_EPOCHS``, spread over the shared ``FMNIST_EPOCHS`` in proportion:
    every stage, warm-up and milestone keeps its share of the budget (``scale_stages``)."""
    return scale_stages(stages, FMNIST_EPOCHS)


def ce_fmnist_stage() -> StageConfig:
    """CE's fmnist_lt stage at the design budget: the optimiser the other fmnist_lt recipes start from."""
    return StageConfig(
        epochs=FMNIST_DESIGN_EPOCHS, batch_size=FMNIST_BATCH, lr=0.05, weight_decay=5e-4, warmup_epochs=2
    )


def ce_fmnist_lt() -> Recipe:
    (stage,) = fmnist_budget([ce_fmnist_stage()])
    return Recipe(
        method="ce",
        arch="resnet32",
        dataset="fmnist_lt",
        stages=[stage],
        notes=f"ltzoo's CPU-scale recipe: {stage.epochs} epochs (the shared fmnist_lt budget), cosine schedule with "
        f"{stage.warmup_epochs} warmup epochs; selection on the balanced val split.",
    )


def ce_cifar_lt(dataset: str) -> Recipe:
    # kaidic/LDAM-DRW cifar_train.py (ERM): 200 epochs, batch 128, SGD 0.9, wd 2e-4, lr 0.1,
    # 5 warmup epochs, lr x0.01 after epoch 160 and x1e-4 after 180.
    return Recipe(
        method="ce",
        arch="resnet32",
        dataset=dataset,
        stages=[
            StageConfig(
                epochs=200,
                batch_size=128,
                lr=0.1,
                weight_decay=2e-4,
                warmup_epochs=5,
                schedule="step",
                milestones=(160, 180),
                gamma=0.01,
            )
        ],
        notes="LDAM-DRW schedule (kaidic/LDAM-DRW cifar_train.py); ltzoo selects on val, the official code on test.",
    )


def ce_imagenet_lt(arch: str) -> Recipe:
    # Decoupling (classifier-balancing) joint CE baseline: 90 epochs, cosine; batch 256 at lr 0.1.
    return Recipe(
        method="ce",
        arch=arch,
        dataset="imagenet_lt",
        stages=[StageConfig(epochs=90, batch_size=256, lr=0.1, weight_decay=5e-4, schedule="cosine")],
        notes="90-epoch cosine schedule of the Decoupling baselines (batch 256, lr 0.1).",
    )


# The first tag of an arch is its default (timm's rule): ce_resnet32 means ce_resnet32.cifar100_lt.
register_recipes(
    "ce",
    {
        "resnet32.cifar100_lt": partial(ce_cifar_lt, "cifar100_lt"),
        "resnet32.cifar10_lt": partial(ce_cifar_lt, "cifar10_lt"),
        "resnet32.fmnist_lt": ce_fmnist_lt,
        "resnet50.imagenet_lt": partial(ce_imagenet_lt, "resnet50"),
        "resnext50_32x4d.imagenet_lt": partial(ce_imagenet_lt, "resnext50_32x4d"),
    },
    paper="Cross-entropy baseline (ERM)",
)
