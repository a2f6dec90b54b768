"""DSCL and DSCL + PBSD recipes: ``dscl_{arch}`` / ``dscl_pbsd_{arch}``, two stages each.

Paper scale (ResNet-50; ImageNet-LT by default, also iNaturalist 2018 and Places-LT) follows the
official code's hyper-parameters (``SY-Xuan/DSCL: main.py``, ``train.sh``, ``equal_lincls.py``,
``train_cls.sh``); see ``reference/methods.md`` 1(b). The code ships only an ImageNet-LT loader, so
the iNaturalist 2018 and Places-LT recipes reuse the ImageNet-LT table (the paper's settings for
them are not published in the code). The ResNet-32 recipes (CIFAR-100-LT, fmnist_lt) are ltzoo's
own scaling; nothing is published for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

from ltzoo.errors import BadHyperParameterError
from ltzoo.recipe import (
    CLASSIFIER_STAGE,
    REPRESENTATION_STAGE,
    DataSize,
    MethodKnob,
    Recipe,
    StageConfig,
    declare_method_knob,
)
from ltzoo.recipes.ce import FMNIST_BATCH, FMNIST_DESIGN_EPOCHS, FMNIST_EPOCHS, fmnist_budget
from ltzoo.recipes.scl import SMALL_VIEW
from ltzoo.registry import register_recipes

PAPER = "Decoupled Contrastive Learning for Long-Tailed Recognition (Xuan & Zhang, AAAI 2024, arXiv 2403.06151)"
OFFICIAL_BETA = 8.0  # main.py --contrastive_beta
OFFICIAL_PBSD_WEIGHT = 1.5  # main.py --pbsd_weight
OFFICIAL_QUEUE = 65_536  # the official queue size K (reference/methods.md 1(b)): about half of ImageNet-LT

# fmnist_lt: the shared budget split between the two stages (written at the design budget, spread over
# FMNIST_EPOCHS in proportion).
FMNIST_CLASSIFIER_EPOCHS = 6
FMNIST_REPRESENTATION_EPOCHS = FMNIST_DESIGN_EPOCHS - FMNIST_CLASSIFIER_EPOCHS
# Stage-2 lr of the ResNet-32 recipes (the official 10 is for batch 2048 on 2048-d features).
STAGE2_SMALL_LR = 1.0
# The ResNet-32 recipes' views: ltzoo.recipes.scl.SMALL_VIEW. DSCL + PBSD's full sweep (recipe_sweep.md):
# val 71.5 (0.2-1) -> 75.1 (0.5-1) -> 76.7 (0.8-1), pad-crop 76.7 (tie: 0.8-1 keeps the official crop family);
# temperature 0.2 (72.8), lr x2 (72.0) and all three winners together (73.6) scored below the view change alone,
# so the temperature and lr stay the official ones. DSCL without PBSD, swept on the view alone: 68.7 -> 75.9.


def beta_to_alpha(beta: float) -> float:
    """The official ``--contrastive_beta`` as the weight of the own view: alpha = 1 / (1 + beta)."""
    if beta < 0:
        raise BadHyperParameterError(f"DSCL beta must be >= 0, got {beta}")
    return 1.0 / (1.0 + beta)


def _method_args(pbsd: bool, **overrides: Any) -> dict[str, Any]:
    args = {
        "alpha": beta_to_alpha(OFFICIAL_BETA),
        "temperature": 0.07,
        "momentum": 0.999,
        "queue_size": OFFICIAL_QUEUE,
        "proj_dim": 128,
        "proj_hidden": 0,  # = backbone width: Linear(2048, 2048) -> ReLU -> Linear(2048, 128)
        "pbsd_weight": OFFICIAL_PBSD_WEIGHT if pbsd else 0.0,
        "num_patches": 5,
        "patch_size": 0,  # 64 px at 224 (official); half the view side on small images
        "key_bn_splits": 2,  # single process: shuffled BN over 2 chunks, as the official 2 GPUs
        "classifier_augment": "official",  # equal_lincls.py: RandomResizedCrop + photometrics + flip
        "probe_bn": "train",  # equal_lincls.py calls model.train(): BN follows the class-balanced stream
    }
    args.update(overrides)
    return args


def _method(pbsd: bool) -> str:
    return "dscl_pbsd" if pbsd else "dscl"


def dscl_paper(dataset: str, pbsd: bool) -> Recipe:
    """ResNet-50 at 224 px with the official table (lr 0.1 x batch/256 at batch 256)."""
    return Recipe(
        method=_method(pbsd),
        arch="resnet50",
        dataset=dataset,
        stages=[
            StageConfig(
                name=REPRESENTATION_STAGE,
                epochs=200,
                batch_size=256,
                lr=0.1,
                momentum=0.9,
                weight_decay=5e-4,
                warmup_epochs=10,
                schedule="cosine",
                sampler="instance",
            ),
            StageConfig(
                name=CLASSIFIER_STAGE,
                epochs=40,
                batch_size=2048,
                lr=10.0,
                momentum=0.9,
                weight_decay=0.0,
                schedule="step",
                milestones=(20, 30),
                gamma=0.1,
                sampler="class_balanced",
                train="head",
            ),
        ],
        method_args=_method_args(pbsd),
        num_workers=16,  # main.py -j 16
        notes=(
            "Official code table (main.py, train.sh, equal_lincls.py, train_cls.sh): stage 1 200 epochs, "
            "batch 256, SGD 0.9, lr 0.1, wd 5e-4, 10 warmup epochs then half-cosine per step; beta 8 "
            "(alpha 1/9), tau 0.07, m 0.999, queue 65536, MLP 2048-2048-128, PBSD 5 patches of 64 px, "
            "weight 1.5. Stage 2: class-balanced linear classifier on RandomResizedCrop + photometric views, "
            "batch 2048, lr 10, wd 0, 40 epochs, "
            "x0.1 at 20 and 30, fc init N(0, 0.01), the frozen backbone's BN in train mode as equal_lincls.py. "
            "timm's resnet50 zero-inits the last BN of each block, like the official zero_init_residual=True. "
            "Departures: selection on val (official: on test), queue starts empty (official: random). "
            + (
                ""
                if dataset == "imagenet_lt"
                else f"{dataset}: the official code has no loader for it; the ImageNet-LT table is reused."
            )
        ),
    )


def _small_stages(dataset: str) -> list[StageConfig]:
    """The two stages of the ResNet-32 recipes (fmnist_lt at its shared budget, CIFAR-100-LT)."""
    if dataset == "fmnist_lt":
        # The shared fmnist_lt budget at FMNIST_BATCH, split 24 + 6 at the design budget (80 / 20).
        epochs1, epochs2, batch1, batch2, warmup = (
            FMNIST_REPRESENTATION_EPOCHS,
            FMNIST_CLASSIFIER_EPOCHS,
            FMNIST_BATCH,
            FMNIST_BATCH,
            2,
        )
        milestones: tuple[int, ...] = (3, 5)
    else:
        epochs1, epochs2, batch1, batch2, warmup = 200, 40, 256, 512, 10
        milestones = (20, 30)
    stages = [
        StageConfig(
            name=REPRESENTATION_STAGE,
            epochs=epochs1,
            batch_size=batch1,
            lr=0.1 * batch1 / 256,
            momentum=0.9,
            weight_decay=5e-4,
            warmup_epochs=warmup,
            schedule="cosine",
            sampler="instance",
        ),
        StageConfig(
            name=CLASSIFIER_STAGE,
            epochs=epochs2,
            batch_size=batch2,
            lr=STAGE2_SMALL_LR,
            momentum=0.9,
            weight_decay=0.0,
            schedule="step",
            milestones=milestones,
            gamma=0.1,
            sampler="class_balanced",
            train="head",
        ),
    ]
    if dataset == "fmnist_lt":
        stages = fmnist_budget(stages)
    return stages


def dscl_small(dataset: str, pbsd: bool, alpha: float | str = beta_to_alpha(OFFICIAL_BETA)) -> Recipe:
    """ResNet-32 on fmnist_lt / CIFAR-100-LT: ltzoo's scaling of the official recipe.

    ``alpha="scl"`` gives the SCL baseline of the paper's ablation (``pbsd=True`` with it: "PBSD only").
    """
    stages = _small_stages(dataset)
    queue = 1024 if dataset == "fmnist_lt" else 4096  # about half the training set
    epochs1, epochs2 = (stage.epochs for stage in stages)
    return Recipe(
        method=_method(pbsd),
        arch="resnet32",
        dataset=dataset,
        stages=stages,
        # m 0.99: a few hundred (fmnist) to a few thousand steps are too few for 0.999 (MoCo's CIFAR
        # demos use 0.99 as well). Queue about half the training set, as 65536 is for ImageNet-LT.
        # Stage 2 trains on the dataset's standard augmentation: the official RandomResizedCrop probe
        # cost about 5 pt val top-1 on fmnist_lt (see dscl_views.classifier_view). The probe keeps stage 1's
        # BN statistics (probe_bn="frozen"), chosen on val over the official train mode and a re-estimate on
        # standard-augmented images (benchmarks/results/dscl_probe_bn.md: mean val over 3 seeds 70.5 vs
        # 70.0 vs 68.2 for DSCL + PBSD, 69.6 vs 68.3 vs 68.4 for PBSD only).
        method_args=_method_args(
            pbsd,
            alpha=alpha,
            momentum=0.99,
            queue_size=queue,
            classifier_augment="standard",
            probe_bn="frozen",
            **SMALL_VIEW,
        ),
        # The multi-view transform (2 views + 5 patches) costs ~1.5 ms per image: one worker process
        # (single-threaded, as DataLoader workers are) prepares batches while the model trains.
        num_workers=1,
        notes=(
            "ltzoo's scaling (no published small-scale recipe): the official loss and stage structure with "
            "lr 0.1 x batch/256, m 0.99, queue about half the training set, patches half the view side "
            "(14 px on fmnist_lt, 16 px on CIFAR), view crops of scale 0.8-1 (chosen on fmnist_lt val over 0.2-1, "
            "0.5-1 and pad-crop, in a one-factor sweep that also tried tau 0.1/0.2, lr x0.5/x2, a 90/10 split and "
            "3/4-side patches: benchmarks/results/recipe_sweep.md; carried to CIFAR unvalidated), a stage-2 lr chosen "
            "on val for fmnist_lt, and stage 2 on the dataset's standard augmentation (pad-crop + flip) instead of "
            "the official RandomResizedCrop + photometrics, which cost about 5 pt val top-1 on fmnist_lt. The "
            "probe keeps stage 1's BatchNorm statistics (probe_bn 'frozen', chosen on val over the official train "
            "mode and a re-estimate: benchmarks/results/dscl_probe_bn.md)."
            + (
                f" fmnist_lt: the shared {FMNIST_EPOCHS}-epoch budget split {epochs1} + {epochs2}."
                if dataset == "fmnist_lt"
                else ""
            )
        ),
    )


def derived_queue_size(size: DataSize) -> int:
    """On other data: the largest power of two <= N / 2 (the official queue is about half of ImageNet-LT, and
    ltzoo's small recipes also keep about half), at least the first stage's batch, at most the official size."""
    return min(OFFICIAL_QUEUE, max(size.batch_size, 2 ** math.floor(math.log2(max(size.train_images / 2, 1)))))


declare_method_knob(
    MethodKnob(
        arg="queue_size",
        option="--queue-size",
        type=int,
        methods="DSCL",
        what="momentum-queue length",
        rule=f"the largest power of two <= N/2, at least the batch, at most {OFFICIAL_QUEUE:,}",
        derive=derived_queue_size,
        valid=lambda value: value >= 1,
        valid_range="must be >= 1",
    )
)


def _table(pbsd: bool) -> dict[str, Callable[[], Recipe]]:
    """DSCL's and DSCL + PBSD's zoo entries: the same recipes, with or without PBSD. First tag = default."""
    return {
        "resnet50.imagenet_lt": partial(dscl_paper, "imagenet_lt", pbsd),
        "resnet50.inat2018": partial(dscl_paper, "inat2018", pbsd),
        "resnet50.places_lt": partial(dscl_paper, "places_lt", pbsd),
        "resnet32.cifar100_lt": partial(dscl_small, "cifar100_lt", pbsd),
        "resnet32.fmnist_lt": partial(dscl_small, "fmnist_lt", pbsd),
    }


register_recipes("dscl", _table(pbsd=False), paper=PAPER)
register_recipes("dscl_pbsd", _table(pbsd=True), paper=PAPER)
