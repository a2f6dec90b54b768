"""The contract between the trainer and a method.

A method (CE, LDAM-DRW, SCL, RSG, ICCL, WB, DSCL, ...) is a subclass of :class:`Objective`,
registered with :func:`register_method`. The trainer builds one objective per stage of a recipe and
calls, in order::

    objective = get_method(recipe.method)(model, ctx)     # ctx: StageContext for this stage
    loader    = objective.train_loader(make_loader)         # default: stage sampler + train_transform()
    params    = objective.param_groups()                    # default: trainable model params + own params
    for epoch in ...:
        objective.set_train_mode()                          # default: train, frozen backbone in eval
        objective.on_epoch_start(epoch)
        for batch in loader:
            out = objective.training_step(batch, epoch)     # StepOutput(loss, logs)
            out.loss.backward(); optimizer.step(); objective.after_optimizer_step()
        objective.on_epoch_end(epoch)
    objective.finalize()                                    # e.g. bake a logit adjustment into model.head

Training-only modules (projection heads, RSG, momentum encoder, queues, centroids) are attributes of
the objective, so they are checkpointed with it (``objective.state_dict()``) for resume, and are
never part of the inference model that is saved and exported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ltzoo.data.spec import DataInfo
from ltzoo.errors import BadHyperParameterError
from ltzoo.models.backbones import trained_part
from ltzoo.recipe import Recipe, StageConfig


@dataclass
class StageContext:
    """Everything an objective may read about its stage."""

    recipe: Recipe
    stage: StageConfig
    stage_index: int
    data: DataInfo
    steps_per_epoch: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world_size: int = 1
    # Evaluates a model on the val split (set by the trainer): for post-hoc choices such as a
    # logit-adjustment tau, which must be chosen on val and never on test.
    evaluate_val: Callable[[nn.Module], dict[str, Any]] | None = None

    @property
    def args(self) -> dict[str, Any]:
        """The recipe's method hyper-parameters."""
        return self.recipe.method_args


@dataclass
class StepOutput:
    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


# make_loader(sampler: str, transform: Callable) -> iterable of batches, built by the trainer.
LoaderFactory = Callable[[str, Callable[[Any], Any]], Any]


class Objective(nn.Module):
    """Base class: plain cross-entropy on a single augmented view (the CE baseline)."""

    def __init__(self, model: nn.Module, ctx: StageContext) -> None:
        super().__init__()
        # Stored outside the module tree so objective.state_dict() holds only training-only state.
        self.__dict__["model"] = model
        self.ctx = ctx

    # ----- data -----------------------------------------------------------------------------
    def train_transform(self) -> Callable[[Any], Any]:
        """Per-sample transform for this stage; may return a tuple of views."""
        from ltzoo.data.transforms import train_transform

        return train_transform(self.ctx.data)

    def train_loader(self, make_loader: LoaderFactory) -> Any:
        return make_loader(self.ctx.stage.sampler, self.train_transform())

    # ----- optimisation ---------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups for SGD. Weight decay comes from the stage unless a group sets it."""
        model_params = [p for p in self.model.parameters() if p.requires_grad]
        own = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": model_params}]
        if own:
            groups.append({"params": own})
        return groups

    def training_step(self, batch: Any, epoch: int) -> StepOutput:
        images, targets = batch
        logits = self.model(images)
        loss = nn.functional.cross_entropy(logits, targets)
        return StepOutput(loss)

    # ----- hooks ----------------------------------------------------------------------------
    def set_train_mode(self) -> None:
        """Called before each epoch: modules in training mode, except what the stage freezes (a decoupled classifier
        stage's whole backbone, ``train="head"``; all but the last N groups, ``train="last:N"``), which stays in eval
        mode, BatchNorm statistics included."""
        self.model.train()
        self.train()
        if self.ctx.stage.train != "all":
            self.model.backbone.eval()
            for module in trained_part(self.model.backbone, self.ctx.stage.train):
                module.train()

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch of this stage (0-indexed within the stage)."""

    def after_optimizer_step(self) -> None:
        """Called after every optimizer step (e.g. momentum-encoder update)."""

    def on_epoch_end(self, epoch: int) -> None:
        """Called after each epoch (e.g. MaxNorm projection)."""

    def finalize(self) -> None:
        """Called once after the stage's last epoch, before the model is saved."""


# A method maps (model, ctx) to the objective of ctx.stage; a multi-stage method is usually a small
# function that picks an Objective subclass by ``ctx.stage.name``.
MethodFactory = Callable[[nn.Module, StageContext], Objective]
_METHODS: dict[str, MethodFactory] = {}
# Method arguments that only a later stage reads, per method and stage: a run can branch from the end of
# the stage before it with other values of these (``ltzoo.engine.branch``); every other argument must match.
_STAGE_ONLY_ARGS: dict[str, dict[str, frozenset[str]]] = {}
# Stages that train exactly as another method's recipe does, per method and stage (weight balancing's stage 1 is
# ce_wd): two runs that agree on everything else are the same run up to the end of that stage, which a race
# (``ltzoo select``) trains once.
_STAGE_AS_METHOD: dict[str, dict[str, str]] = {}


def register_method(name: str) -> Callable[[MethodFactory], MethodFactory]:
    """Decorator: register ``name``'s objective factory. A name registered twice is an error (the second
    module would silently replace the first one's objective)."""

    def wrap(factory: MethodFactory) -> MethodFactory:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is already registered (by {_METHODS[name]!r}); pick another name")
        _METHODS[name] = factory
        return factory

    return wrap


def _load_methods() -> None:
    # Every module of ltzoo.methods registers its methods when imported; importing them here (not at the top)
    # keeps the contract free of the methods that implement it.
    from ltzoo.submodules import import_submodules

    import_submodules("ltzoo.methods")


def get_method(name: str) -> MethodFactory:
    """The objective factory of method ``name``, whether or not a recipe module was imported before."""
    _load_methods()
    if name not in _METHODS:
        raise BadHyperParameterError(f"recipe method {name!r} has no objective; known: {sorted(_METHODS)}")
    return _METHODS[name]


def declare_stage_only_args(method: str, stage: str, names: set[str] | frozenset[str]) -> None:
    _STAGE_ONLY_ARGS.setdefault(method, {})[stage] = frozenset(names)


def declare_stage_as_method(method: str, stage: str, same_as: str) -> None:
    """Stage ``stage`` of ``method`` trains exactly as method ``same_as`` does, whatever ``method``'s arguments
    (which only its other stages read)."""
    _STAGE_AS_METHOD.setdefault(method, {})[stage] = same_as


def stage_trains_as(method: str, stage: str) -> str | None:
    """The method whose training ``stage`` of ``method`` repeats exactly (declared), else None."""
    _load_methods()
    return _STAGE_AS_METHOD.get(method, {}).get(stage)


def stage_only_args(method: str) -> dict[str, frozenset[str]]:
    """``{stage: argument names}`` that only that stage of ``method`` reads (empty when none are declared)."""
    _load_methods()
    return dict(_STAGE_ONLY_ARGS.get(method, {}))


register_method("ce")(Objective)


def resolve_method_args(ctx: StageContext, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe's ``method_args`` over ``defaults``; an unknown key is a (likely misspelt) error."""
    unknown = sorted(set(ctx.args) - set(defaults))
    if unknown:
        raise BadHyperParameterError(
            f"method {ctx.recipe.method!r} does not know method_args {unknown}; known: {sorted(defaults)}"
        )
    return {**defaults, **ctx.args}
