"""cRT (Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition", ICLR 2020):
the classifier of a plain CE model re-trained with class-balanced sampling on frozen features.

A reference row, not a method of the seed papers: it separates "a better representation" from "a
re-balanced classifier". Stage ``"representation"`` is the CE baseline (instance sampling, plain CE);
stage ``"classifier"`` re-initialises the linear classifier (N(0, 0.01), zero bias) and trains it with CE
under class-balanced sampling, the backbone frozen with BatchNorm in eval mode (Decoupling's cRT).
"""

from __future__ import annotations

from torch import nn

from ltzoo.engine.objective import Objective, StageContext, register_method
from ltzoo.errors import BadHyperParameterError
from ltzoo.models.heads import reinitialise_head
from ltzoo.recipe import CLASSIFIER_STAGE, REPRESENTATION_STAGE

HEAD_INIT_STD = 0.01


class ClassifierRetraining(Objective):
    """Stage 2: a re-initialised classifier trained with CE on frozen features (class-balanced sampler)."""

    def __init__(self, model: nn.Module, ctx: StageContext) -> None:
        super().__init__(model, ctx)
        if ctx.stage.sampler != "class_balanced" or ctx.stage.train != "head":
            raise BadHyperParameterError(
                f"cRT's {CLASSIFIER_STAGE!r} stage needs sampler='class_balanced' and train='head', got "
                f"{ctx.stage.sampler!r} and {ctx.stage.train!r}"
            )

    def on_epoch_start(self, epoch: int) -> None:
        if epoch == 0:  # a run resumed later in the stage keeps the head it trained
            reinitialise_head(
                self.model.head, HEAD_INIT_STD, seed=self.ctx.recipe.seed * 1_000_003 + self.ctx.stage_index
            )


@register_method("crt")
def crt(model: nn.Module, ctx: StageContext) -> Objective:
    if ctx.stage.name == REPRESENTATION_STAGE:
        return Objective(model, ctx)
    if ctx.stage.name == CLASSIFIER_STAGE:
        return ClassifierRetraining(model, ctx)
    raise BadHyperParameterError(
        f"cRT has stages {REPRESENTATION_STAGE!r} and {CLASSIFIER_STAGE!r}, not {ctx.stage.name!r}"
    )
