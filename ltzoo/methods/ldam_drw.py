"""LDAM-DRW (Cao et al., NeurIPS 2019): LDAM margin loss on a cosine classifier, deferred re-weighting.

Follows kaidic/LDAM-DRW ``cifar_train.py`` (``--loss_type LDAM --train_rule DRW``). ``method_args``
(defaults in :data:`LDAM_ARGS`):

* ``max_m`` / ``s``: the largest margin and the logit scale (official CIFAR 0.5 / 30);
* ``drw_start_fraction``: DRW switches on at epoch ``round(fraction * stage.epochs)`` of the stage
  (0-indexed), i.e. 160 of 200 for the official 0.8; ``None`` keeps uniform weights throughout.
  A fraction rather than an epoch number so that ``ltzoo train --epochs N`` (which rescales the
  stages) moves the switch with the schedule;
* ``drw_beta``: the class-balanced beta from the switch on (official 0.9999);
* ``drs_start_fraction``: deferred re-*sampling* (RSG's ImageNet-LT / iNat / Places scripts): the
  instance sampler is replaced by the ``drs_sampler`` one from that epoch on; ``None`` = never;
* ``drs_sampler``: the sampler kind of deferred re-sampling, ``"effective_number"`` by default: the
  official ``ImbalancedDatasetSampler`` that RSG's scripts switch to (``if epoch == 80`` etc.), which
  samples with replacement with class probability proportional to n_c (1 - beta) / (1 - beta^n_c),
  beta 0.9999: nearly, not exactly, uniform over classes (see :mod:`ltzoo.data.samplers`).

The ``LDAMDRWObjective`` is also the base of the RSG and SCL+RSG+LDAM objectives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from ltzoo.engine.objective import (
    LoaderFactory,
    Objective,
    StageContext,
    StepOutput,
    register_method,
    resolve_method_args,
)
from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.ldam import DeferredReweighting, LDAMLoss
from ltzoo.recipe import SAMPLERS

LDAM_ARGS: dict[str, Any] = {
    "max_m": 0.5,
    "s": 30.0,
    "drw_start_fraction": 0.8,
    "drw_beta": 0.9999,
    "drs_start_fraction": None,
    "drs_sampler": "effective_number",
}


def start_epoch(fraction: float | None, stage_epochs: int, what: str) -> int | None:
    """``round(fraction * stage_epochs)``, or ``None`` when the switch is off."""
    if fraction is None:
        return None
    if not 0.0 <= fraction <= 1.0:
        raise BadHyperParameterError(f"{what} must be a fraction of the stage in [0, 1] (or None), got {fraction}")
    return round(fraction * stage_epochs)


def require_cosine_head(ctx: StageContext) -> None:
    head_type = ctx.recipe.head.get("type", "linear")
    if head_type != "cosine":
        raise BadHyperParameterError(
            f"LDAM needs cosine logits: set the recipe's head to {{'type': 'cosine'}} (got {head_type!r}); "
            "the official code switches to NormedLinear whenever the loss is LDAM"
        )


class EpochSwitchLoader:
    """Iterates ``before`` until ``switch_epoch``, then ``after`` (deferred re-sampling)."""

    def __init__(self, before: Any, after: Any, switch_epoch: int) -> None:
        self.before, self.after, self.switch_epoch = before, after, switch_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def current(self) -> Any:
        return self.after if self.epoch >= self.switch_epoch else self.before

    def __iter__(self) -> Iterator[Any]:
        return iter(self.current())

    def __len__(self) -> int:
        return len(self.current())


class LDAMDRWObjective(Objective):
    """LDAM loss on the model's cosine logits, with the DRW weights of the current epoch."""

    default_args: dict[str, Any] = LDAM_ARGS

    def __init__(self, model: torch.nn.Module, ctx: StageContext) -> None:
        super().__init__(model, ctx)
        self.hparams = resolve_method_args(ctx, self.default_args)
        require_cosine_head(ctx)
        counts = list(ctx.data.class_counts)
        self.criterion = LDAMLoss(counts, max_m=self.hparams["max_m"], s=self.hparams["s"])
        epochs = ctx.stage.epochs
        self.drw_epoch = start_epoch(self.hparams["drw_start_fraction"], epochs, "drw_start_fraction")
        self.drs_epoch = start_epoch(self.hparams["drs_start_fraction"], epochs, "drs_start_fraction")
        self.drw = (
            None if self.drw_epoch is None else DeferredReweighting(counts, self.drw_epoch, self.hparams["drw_beta"])
        )
        if self.hparams["drs_sampler"] not in SAMPLERS:
            raise BadHyperParameterError(f"drs_sampler {self.hparams['drs_sampler']!r} not in {SAMPLERS}")
        self._switch_loader: EpochSwitchLoader | None = None

    def train_loader(self, make_loader: LoaderFactory) -> Any:
        transform: Callable[[Any], Any] = self.train_transform()
        loader = make_loader(self.ctx.stage.sampler, transform)
        if self.drs_epoch is None:
            return loader
        resampled = make_loader(self.hparams["drs_sampler"], transform)
        self._switch_loader = EpochSwitchLoader(loader, resampled, self.drs_epoch)
        return self._switch_loader

    def on_epoch_start(self, epoch: int) -> None:
        if self.drw is not None:
            self.criterion.set_weight(self.drw.weights(epoch))
        if self._switch_loader is not None:
            self._switch_loader.set_epoch(epoch)

    def classification_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.criterion(logits, targets)

    def training_step(self, batch: Any, epoch: int) -> StepOutput:
        images, targets = batch
        return StepOutput(self.classification_loss(self.model(images), targets))


register_method("ldam_drw")(LDAMDRWObjective)
