"""The one-stage simplification of weight balancing (Hasegawa & Sato, ICLR 2024).

As HN410/Exploring-Weight-Balancing-on-Long-Tailed-Recognition-Problem (``jsons/*/first.json`` then
``second.json``):

- training ("first"): cross-entropy + weight decay as an explicit penalty
  lambda_wd * sum ||theta||^2 / 2 over the trained parameters (convolutions, BatchNorm, the classifier
  bias; not the fixed ETF) + feature regularisation lambda_FR * mean ||f||^2 / 2, with a fixed
  simplex-ETF classifier (head ``{"type": "etf"}``) whose bias alone trains;
- then ("second", zero epochs) post-hoc logit adjustment, multiplicative by default:
  logits * pi^(-tau), pi the training class prior.

lambda_wd is the stage's ``weight_decay``; the objective turns it into the explicit penalty and gives
the optimiser no decay of its own (for SGD the two are the same update, what differs is which
parameters are decayed, and that the logged loss includes the penalty).

tau is chosen in :meth:`OneStageObjective.finalize` on the **val** split (never test) from
``la_tau_grid``, by mean per-class val accuracy (ties go to the smaller tau), and then lives in the
saved model: the head becomes ``{"type": "logit_adjusted", "tau": ..., "base": {"type": "etf"}}`` with
the prior as a buffer, so ``ltzoo.load`` and the ONNX export give adjusted logits. The official code
fixes tau by hand (0.65 on CIFAR-100-LT, 1.6 on CIFAR-10-LT); a recipe may fix it too (``la_tau``
a number), and ``la_tau: 0`` keeps the plain ETF model (no adjustment).

``method_args`` (defaults :data:`ONESTAGE_ARGS`): ``feature_reg``, ``la_tau`` ("val" or a number),
``la_mode`` ("multiplicative" | "additive"), ``la_tau_grid``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch.nn.functional as F
from torch import nn

from ltzoo.engine.objective import Objective, StageContext, StepOutput, register_method, resolve_method_args
from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.logit_adjustment import check_mode
from ltzoo.losses.weight_balancing import decayed_parameters, feature_regularization, weight_decay_penalty
from ltzoo.models.heads import ETFHead, LogitAdjustedHead

log = logging.getLogger("ltzoo.wb_onestage")

DEFAULT_TAU_GRID: list[float] = [round(0.1 * i, 2) for i in range(21)]  # 0.0, 0.1, ..., 2.0
ONESTAGE_ARGS: dict[str, Any] = {
    "feature_reg": 0.01,
    "la_tau": "val",
    "la_mode": "multiplicative",
    "la_tau_grid": DEFAULT_TAU_GRID,
}


class OneStageObjective(Objective):
    def __init__(self, model: nn.Module, ctx: StageContext) -> None:
        super().__init__(model, ctx)
        args = resolve_method_args(ctx, ONESTAGE_ARGS)
        if not isinstance(model.head, ETFHead):
            raise BadHyperParameterError(
                f"wb_onestage trains against a fixed simplex ETF, but the model's head is {type(model.head).__name__}; "
                'use head {"type": "etf"}'
            )
        if args["feature_reg"] < 0 or ctx.stage.weight_decay < 0:
            raise BadHyperParameterError("wb_onestage: feature_reg and the stage's weight_decay must be >= 0")
        self.weight_decay = ctx.stage.weight_decay
        self.feature_reg = float(args["feature_reg"])
        self.la_mode = check_mode(args["la_mode"])
        self.la_tau = args["la_tau"]
        self.la_tau_grid = [float(t) for t in args["la_tau_grid"]]
        if self.la_tau != "val" and not (isinstance(self.la_tau, (int, float)) and self.la_tau >= 0):
            raise BadHyperParameterError(f"wb_onestage: la_tau must be 'val' or a number >= 0, got {self.la_tau!r}")
        if self.la_tau == "val" and (not self.la_tau_grid or min(self.la_tau_grid) < 0):
            raise BadHyperParameterError("wb_onestage: la_tau_grid must be a non-empty list of taus >= 0")
        self.tau_search: dict[float, float] = {}  # tau -> val mean per-class accuracy, for the log

    def param_groups(self) -> list[dict[str, Any]]:
        # Decay is the explicit penalty in training_step; the optimiser must not decay a second time.
        return [{**group, "weight_decay": 0.0} for group in super().param_groups()]

    def training_step(self, batch: Any, epoch: int) -> StepOutput:
        images, targets = batch
        head: ETFHead = self.model.head
        pooled = self.model.forward_head(self.model.forward_features(images), pre_logits=True)
        features = head.pre_logits(pooled)  # what the ETF sees: the features regularised by FR
        logits = F.linear(features, head.weight, head.bias)
        ce = F.cross_entropy(logits, targets)
        fr = feature_regularization(features)
        wd = weight_decay_penalty(decayed_parameters(self.model))
        loss = ce + self.feature_reg * fr + self.weight_decay * wd
        return StepOutput(loss, {"ce": ce.item(), "feature_sq_norm": fr.item(), "weight_sq_norm": wd.item()})

    def finalize(self) -> None:
        if self.la_tau == 0:
            return  # the plain ETF model, no adjustment
        if self.la_tau == "val":
            if self.ctx.evaluate_val is None:
                raise BadHyperParameterError("wb_onestage needs the trainer's val evaluation to choose tau on val")
            tau, self.tau_search = choose_tau_on_val(
                self.model, self.ctx.data.class_counts, self.ctx.evaluate_val, self.la_tau_grid, self.la_mode
            )
            log.info("logit adjustment: tau %.3g chosen on val from %s", tau, self.tau_search)
        else:
            tau = float(self.la_tau)
            attach_logit_adjustment(self.model, self.ctx.data.class_counts, tau, self.la_mode)


def head_spec(head: nn.Module) -> dict[str, Any]:
    """The config spec of a head that can say it (``config_spec()``), else a plain linear one."""
    spec = getattr(head, "config_spec", None)
    if callable(spec):
        return spec()
    if isinstance(head, nn.Linear):
        return {"type": "linear"}
    raise BadHyperParameterError(f"cannot describe head {type(head).__name__} for a logit-adjusted head")


def attach_logit_adjustment(
    model: nn.Module, class_counts: Sequence[int], tau: float, mode: str = "multiplicative"
) -> LogitAdjustedHead:
    """Wrap ``model.head`` (its trained weights kept) in a :class:`LogitAdjustedHead`; returns it."""
    base = model.head
    if isinstance(base, LogitAdjustedHead):
        raise BadHyperParameterError("the model's head is already logit-adjusted; adjusting twice is a mistake")
    adjusted = LogitAdjustedHead(
        base.in_features, len(class_counts), base=head_spec(base), tau=tau, mode=mode, class_counts=list(class_counts)
    )
    adjusted.base = base  # the trained module itself, not the freshly built copy
    model.head = adjusted.to(next(base.parameters()).device)
    return adjusted


def choose_tau_on_val(
    model: nn.Module,
    class_counts: Sequence[int],
    evaluate_val: Callable[[nn.Module], dict[str, Any]],
    grid: Sequence[float],
    mode: str = "multiplicative",
) -> tuple[float, dict[float, float]]:
    """Attach a logit adjustment and set its tau to the grid value with the best val mean per-class
    accuracy (smallest tau on ties). ``evaluate_val`` must score the **val** split."""
    head = attach_logit_adjustment(model, class_counts, 0.0, mode)
    scores: dict[float, float] = {}
    best_tau, best = 0.0, -1.0
    for tau in sorted(set(float(t) for t in grid)):
        head.tau = tau
        report = evaluate_val(model)
        if report.get("split", "val") != "val":
            raise BadHyperParameterError("tau must be chosen on the val split, not on " + str(report["split"]))
        scores[tau] = float(report["mean_class"])
        if scores[tau] > best:
            best_tau, best = tau, scores[tau]
    head.tau = best_tau
    return best_tau, scores


register_method("wb_onestage")(OneStageObjective)
