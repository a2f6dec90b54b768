"""Weight balancing, two stages (Alshammari et al., CVPR 2022), as ShadeAlsha/LTR-weight-balancing does it.

- ``stage1``: the whole network with plain cross-entropy and a *tuned* weight decay. The decay is
  the optimiser's (``StageConfig.weight_decay``) over every parameter, as the demo's
  ``optim.SGD(model.parameters(), weight_decay=5e-3)``; so this stage is the plain CE objective.
- ``stage2``: only the classifier trains (``StageConfig.train = "head"``) with the class-balanced
  "softmax" loss (BCE on softmax probabilities, beta 0.9999), weight decay 0.1 (the stage's) and
  MaxNorm by projected gradient descent: the radius is fixed once from the stage-1 rows and the rows
  are projected after every epoch (``utils/trainval.py`` calls ``pgdFunc.PGD`` after the train phase).

``method_args`` (defaults :data:`WB_ARGS`): ``cb_beta``, ``maxnorm_thresh``.

Departures from the official code:
- During stage 2 the official notebook leaves the model in ``train()`` mode, so the frozen backbone's
  BatchNorm running statistics keep moving; ltzoo's decoupled stages keep the backbone in eval mode
  (BN statistics frozen too), the usual meaning of "only the classifier trains".
- The official code keeps the epoch with the best *test* accuracy in both stages; ltzoo selects on
  val (see the recipes).

``ce_wd`` is stage 1 alone (CE + tuned weight decay), the "CE+WD" row of the analysis.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ltzoo.engine.objective import (
    Objective,
    StageContext,
    StepOutput,
    declare_stage_as_method,
    register_method,
    resolve_method_args,
)
from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.weight_balancing import ClassBalancedSoftmaxBCE
from ltzoo.models.maxnorm import MaxNormPGD

WB_ARGS: dict[str, Any] = {"cb_beta": 0.9999, "maxnorm_thresh": 0.1}
STAGES = ("stage1", "stage2")


class ClassifierBalancingObjective(Objective):
    """Stage 2: CB softmax-BCE loss on the linear classifier, MaxNorm projection after each epoch."""

    def __init__(self, model: nn.Module, ctx: StageContext) -> None:
        super().__init__(model, ctx)
        args = resolve_method_args(ctx, WB_ARGS)
        if not isinstance(model.head, nn.Linear):
            raise BadHyperParameterError(
                f"wb stage 2 fine-tunes a linear classifier, but the model's head is {type(model.head).__name__}; "
                'use head {"type": "linear"}'
            )
        if ctx.stage.train != "head":
            raise BadHyperParameterError('wb stage 2 trains only the classifier: set the stage\'s train="head"')
        self.criterion = ClassBalancedSoftmaxBCE(ctx.data.class_counts, beta=args["cb_beta"])
        self.maxnorm = MaxNormPGD(thresh=args["maxnorm_thresh"])

    def training_step(self, batch: Any, epoch: int) -> StepOutput:
        images, targets = batch
        return StepOutput(self.criterion(self.model(images), targets))

    def on_epoch_start(self, epoch: int) -> None:
        # The radius comes from the stage-1 rows: measured before the first stage-2 step, and kept
        # (it is in this objective's state_dict) when a run resumes mid-stage.
        if not self.maxnorm.has_radius:
            self.maxnorm.set_radius(self.model.head.weight.detach())

    def on_epoch_end(self, epoch: int) -> None:
        self.maxnorm.project(self.model.head.weight.data)


@register_method("wb")
def weight_balancing(model: nn.Module, ctx: StageContext) -> Objective:
    if ctx.stage.name == "stage1":
        return Objective(model, ctx)
    if ctx.stage.name == "stage2":
        return ClassifierBalancingObjective(model, ctx)
    raise BadHyperParameterError(f"wb has stages {STAGES}, the recipe has a stage named {ctx.stage.name!r}")


# Stage 1 of weight balancing on its own: plain CE, the tuned decay is the stage's weight_decay.
register_method("ce_wd")(Objective)
declare_stage_as_method("wb", "stage1", "ce_wd")
