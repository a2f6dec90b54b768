"""cRT on CE (``crt_resnet32.fmnist_lt``): the reference row that separates representation from classifier.

CE's fmnist_lt recipe for most of the shared budget, then the classifier re-trained class-balanced on
the frozen backbone for ``FMNIST_CLASSIFIER_EPOCHS``, with the optimiser of ICCL's fmnist_lt classifier
stage (CE's lr and weight decay, cosine), so that the two decoupled second stages compare like with like.
"""

from __future__ import annotations

import dataclasses

from ltzoo.recipe import CLASSIFIER_STAGE, REPRESENTATION_STAGE, Recipe, StageConfig
from ltzoo.recipes.ce import FMNIST_BATCH, FMNIST_DESIGN_EPOCHS, FMNIST_EPOCHS, ce_fmnist_stage, fmnist_budget
from ltzoo.registry import register_recipes

PAPER = (
    "Kang et al., Decoupling Representation and Classifier for Long-Tailed Recognition (ICLR 2020, arXiv 1910.09217)"
)
FMNIST_CLASSIFIER_EPOCHS = 5  # of the design budget, as ICCL's fmnist_lt classifier stage


def crt_fmnist_lt() -> Recipe:
    ce = ce_fmnist_stage()
    representation, classifier = fmnist_budget(
        [
            dataclasses.replace(
                ce,
                name=REPRESENTATION_STAGE,
                epochs=FMNIST_DESIGN_EPOCHS - FMNIST_CLASSIFIER_EPOCHS,
                select_on_val=False,
            ),
            StageConfig(
                name=CLASSIFIER_STAGE,
                epochs=FMNIST_CLASSIFIER_EPOCHS,
                batch_size=FMNIST_BATCH,
                lr=ce.lr,
                weight_decay=ce.weight_decay,
                schedule="cosine",
                sampler="class_balanced",
                train="head",
            ),
        ]
    )
    return Recipe(
        method="crt",
        arch="resnet32",
        dataset="fmnist_lt",
        stages=[representation, classifier],
        notes=(
            f"A reference row: CE's fmnist_lt recipe for {representation.epochs} epochs, then Decoupling's cRT "
            f"(classifier re-initialised N(0, 0.01) and re-trained {classifier.epochs} epochs with class-balanced "
            f"sampling on the frozen backbone, BN frozen; lr {ce.lr}, cosine, as ICCL's classifier stage). "
            f"The shared {FMNIST_EPOCHS}-epoch budget in total; selection on val in the classifier stage."
        ),
    )


register_recipes("crt", {"resnet32.fmnist_lt": crt_fmnist_lt}, paper=PAPER)
