"""The one-stage simplification of weight balancing: ``wb_onestage_resnet32`` (CIFAR-100-LT default,
CIFAR-10-LT, fmnist_lt).

CIFAR follows the official code (HN410/Exploring-Weight-Balancing-on-Long-Tailed-Recognition-Problem
``jsons/Cifar100/first.json``, ``jsons/Cifar10/first.json``, ``second.json``; ``reference/methods.md``
3B): SGD momentum 0.9, lr 0.01 cosine to 0, batch 64, **320 epochs (the code's count)**, weight decay
5e-3 as an explicit penalty, feature regularisation 0.01, fixed simplex-ETF classifier, then
multiplicative logit adjustment. Departures:
- **ResNet-32** instead of the code's ResNet-34 (ltzoo's CIFAR backbone, as the two-stage paper
  names it). ResNet-32's 64-d feature cannot hold a 100-class simplex ETF (that needs >= 100
  dimensions), so the CIFAR-100-LT head lifts the features to 128 dimensions first (Linear -> BN ->
  ReLU, trained and decayed like the backbone); ltzoo's own choice, CIFAR-10-LT needs no lift.
- tau is chosen on val from a grid (the code fixes 0.65 on CIFAR-100-LT and 1.6 on CIFAR-10-LT, found
  by hand); both official values lie on the grid.

fmnist_lt: ltzoo's CPU scaling with the CE recipe's stage (its budget, batch, lr, warmup and
schedule) and the weight decay tuned on val for ``ce_wd_resnet32.fmnist_lt``, used here as
the official code uses one decay for both.
"""

from __future__ import annotations

import dataclasses
from functools import partial

from ltzoo.recipe import Recipe, StageConfig
from ltzoo.recipes.ce import FMNIST_EPOCHS, ce_fmnist_stage, fmnist_budget
from ltzoo.recipes.wb import FMNIST_WEIGHT_DECAY
from ltzoo.registry import register_recipes

PAPER = "Exploring Weight Balancing on Long-Tailed Recognition Problem (Hasegawa & Sato, ICLR 2024, arXiv 2305.16573)"

# 0.00, 0.05, ..., 2.50: contains the official 0.65 and 1.6.
CIFAR_TAU_GRID = [round(0.05 * i, 2) for i in range(51)]
# 0.0, 0.1, ..., 2.0: each point costs one val pass, kept small for 2 CPU cores.
FMNIST_TAU_GRID = [round(0.1 * i, 2) for i in range(21)]


def wb_onestage_cifar(dataset: str) -> Recipe:
    lift = {"lift_dim": 128} if dataset == "cifar100_lt" else {}
    return Recipe(
        method="wb_onestage",
        arch="resnet32",
        dataset=dataset,
        stages=[
            StageConfig(
                name="main", epochs=320, batch_size=64, lr=0.01, momentum=0.9, weight_decay=5e-3, schedule="cosine"
            )
        ],
        head={"type": "etf", **lift},
        method_args={"feature_reg": 0.01, "la_tau": "val", "la_mode": "multiplicative", "la_tau_grid": CIFAR_TAU_GRID},
        notes=(
            "Official code settings (lr 0.01 cosine, batch 64, explicit wd 5e-3, FR 0.01, ETF, multiplicative LA); "
            "follows the CODE's 320 epochs; ResNet-32 instead of the code's ResNet-34"
            + (
                " with a 64->128 lift before the ETF (ltzoo's choice: 64 dims cannot hold a 100-class ETF)"
                if lift
                else ""
            )
            + f"; tau chosen on val (official fixed tau: {0.65 if dataset == 'cifar100_lt' else 1.6})."
        ),
    )


def wb_onestage_fmnist() -> Recipe:
    return Recipe(
        method="wb_onestage",
        arch="resnet32",
        dataset="fmnist_lt",
        stages=fmnist_budget([dataclasses.replace(ce_fmnist_stage(), name="main", weight_decay=FMNIST_WEIGHT_DECAY)]),
        head={"type": "etf"},
        method_args={"feature_reg": 0.01, "la_tau": "val", "la_mode": "multiplicative", "la_tau_grid": FMNIST_TAU_GRID},
        notes=(
            f"ltzoo's CPU scaling: the CE fmnist recipe's stage ({FMNIST_EPOCHS} epochs, its batch, lr and warmup) "
            f"with explicit weight decay {FMNIST_WEIGHT_DECAY} (tuned on val for ce_wd), FR 0.01 as the code, "
            "fixed ETF, multiplicative LA with tau chosen on val."
        ),
    )


# The first tag of an arch is its default (timm's rule).
register_recipes(
    "wb_onestage",
    {
        "resnet32.cifar100_lt": partial(wb_onestage_cifar, "cifar100_lt"),
        "resnet32.cifar10_lt": partial(wb_onestage_cifar, "cifar10_lt"),
        "resnet32.fmnist_lt": wb_onestage_fmnist,
    },
    paper=PAPER,
)
