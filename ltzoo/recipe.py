"""What a zoo entry trains (the registry's schema, as timm keeps ``_pretrained.py`` beside ``_registry.py``):
recipe and stage configuration, plain dataclasses stored verbatim in ``config.json``; :func:`scale_stages`,
which spreads another epoch budget over a recipe's stages; and the method arguments that scale with the data
(:class:`MethodKnob`), which a method's recipe module declares and ``ltzoo train --data`` derives
(:mod:`ltzoo.planner.derived`). Imports no torch: ``ltzoo list`` and ``ltzoo info`` read it.

A recipe is what a zoo entry trains: the method, architecture, dataset, and a list of stages. Each
stage has its own optimiser, schedule, sampler and epoch budget; the method's objective (see
:mod:`ltzoo.engine.objective`) decides what a training step computes in that stage.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ltzoo.errors import BadHyperParameterError, LtzooError
from ltzoo.names import PRECISIONS

# The two stage names of every decoupled method (representation, then classifier re-balancing): recipes name
# their stages with them and the methods' objectives switch on them.
REPRESENTATION_STAGE = "representation"
CLASSIFIER_STAGE = "classifier"
# Methods whose training inserts a module between a ResNet's stages (RSG's feature-map generator): no other
# backbone layout fits them (ltzoo.models.backbones.split_stages says why).
METHODS_NEEDING_RESNET_STAGES = frozenset({"rsg", "scl_rsg_ldam"})

SAMPLERS = ("instance", "class_balanced", "sqrt", "effective_number")  # ltzoo.data.samplers.SAMPLER_KINDS
SCHEDULES = ("cosine", "cosine_epoch", "step", "constant")  # see ltzoo.engine.schedule


def check_precision(requested: str) -> str:
    """``requested`` if it names a training precision (the recipe field and ``--precision``); else an error."""
    if requested not in PRECISIONS:
        raise BadHyperParameterError(
            f"precision {requested!r} is not one of {list(PRECISIONS)}: use auto (bf16 where the hardware has it, "
            "else fp32), fp32, bf16, or fp16 (CUDA only)"
        )
    return requested


def _is_last_n(text: str) -> bool:
    kind, _, count = text.partition(":")
    return kind == "last" and count.isdigit() and int(count) >= 1


@dataclass
class StageConfig:
    """One training stage. ``epochs`` and ``lr`` are for the stage's full (not scaled) budget."""

    name: str = "main"
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    warmup_epochs: int = 0
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()  # epochs (0-indexed) at which a step schedule multiplies by gamma
    gamma: float = 0.1
    sampler: str = "instance"
    # Which parameters train: "all"; "head" (backbone frozen, BN in eval mode; decoupled stage 2); or "last:N",
    # the head and the backbone's last N stages or blocks (the rest frozen, in eval mode): --trainable.
    train: str = "all"
    # Model selection on val in this stage; otherwise the stage's last epoch is kept.
    select_on_val: bool = False

    def __post_init__(self) -> None:
        self.milestones = tuple(self.milestones)
        if self.sampler not in SAMPLERS:
            raise BadHyperParameterError(f"stage {self.name!r}: sampler {self.sampler!r} not in {SAMPLERS}")
        if self.schedule not in SCHEDULES:
            raise BadHyperParameterError(f"stage {self.name!r}: schedule {self.schedule!r} not in {SCHEDULES}")
        if self.train not in ("all", "head") and not _is_last_n(self.train):
            raise BadHyperParameterError(
                f"stage {self.name!r}: train must be 'all', 'head' or 'last:N' (the last N stages or blocks of the "
                f"backbone, N >= 1), got {self.train!r}"
            )
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise BadHyperParameterError(f"stage {self.name!r}: epochs, batch_size and lr must be positive")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise BadHyperParameterError(f"stage {self.name!r}: warmup_epochs must be in [0, epochs]")


def scale_stages(stages: list[StageConfig], total_epochs: int) -> list[StageConfig]:
    """Spread a new total epoch budget over the stages in proportion (at least one epoch each);
    warmup and milestones scale with their stage."""
    old_total = sum(s.epochs for s in stages)
    scaled = []
    for stage in stages:
        epochs = max(1, round(total_epochs * stage.epochs / old_total))
        ratio = epochs / stage.epochs
        scaled.append(
            dataclasses.replace(
                stage,
                epochs=epochs,
                warmup_epochs=min(epochs - 1, round(stage.warmup_epochs * ratio)) if stage.warmup_epochs else 0,
                milestones=tuple(sorted({min(epochs - 1, max(1, round(m * ratio))) for m in stage.milestones})),
            )
        )
    return scaled


@dataclass
class Recipe:
    """Everything needed to train one zoo entry. ``method_args`` are the method's hyper-parameters."""

    method: str
    arch: str
    dataset: str
    stages: list[StageConfig]
    head: dict[str, Any] = field(default_factory=lambda: {"type": "linear"})
    method_args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    num_workers: int = 0
    # auto: bf16 autocast where the hardware computes bf16 natively, else fp32 (ltzoo.precision).
    precision: str = "auto"
    notes: str = ""  # where the recipe follows code vs paper, and ltzoo's own choices

    def __post_init__(self) -> None:
        check_precision(self.precision)
        # Copies: a recipe made with replace(stages=other.stages[:1]) must not change the other recipe's
        # stages when it marks its own last stage for selection below.
        self.stages = [dataclasses.replace(s) if isinstance(s, StageConfig) else StageConfig(**s) for s in self.stages]
        if not self.stages:
            raise BadHyperParameterError("a recipe needs at least one stage")
        if not any(s.select_on_val for s in self.stages):
            # Model selection happens on val in the final stage unless a recipe says otherwise.
            self.stages[-1].select_on_val = True

    @property
    def total_epochs(self) -> int:
        """The epochs of every stage together: the recipe's full budget."""
        return sum(stage.epochs for stage in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        return cls(**data)

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)


def canonical_recipe(data: dict[str, Any]) -> dict[str, Any] | None:
    """What a recorded recipe dict trains, as JSON types: every field present (fields added since it was
    recorded take their defaults) except ``notes``, which trains nothing. None when it is no valid recipe."""
    try:
        canonical = json.loads(json.dumps(Recipe.from_dict(json.loads(json.dumps(data))).to_dict()))
    except (TypeError, ValueError, LtzooError):
        return None
    canonical.pop("notes", None)
    return canonical


def same_recipe(recorded: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether two recipe dicts (a checkpoint's or config.json's, and this run's) describe one recipe.
    Compared as JSON (a checkpoint keeps tuples that JSON turns into lists) after filling defaults, so a
    run recorded before a field with a default existed still matches."""
    canonical = canonical_recipe(recorded)
    return canonical is not None and canonical == canonical_recipe(wanted)


# ----- method arguments that scale with the data -----------------------------------------------------
@dataclass(frozen=True)
class DataSize:
    """What a method knob is derived from."""

    train_images: int
    num_classes: int
    batch_size: int  # the first stage's batch (derived, or the user's --batch-size)


@dataclass(frozen=True)
class MethodKnob:
    """A method argument whose value depends on the data's size, declared by the method's recipe module:
    how to derive it, and the ``ltzoo train`` option that overrides it."""

    arg: str  # the method argument, e.g. "queue_size"
    option: str  # e.g. "--queue-size"
    type: type  # int or float: what the option parses
    methods: str  # whose recipes have the argument, for help and errors, e.g. "DSCL"
    what: str  # e.g. "momentum-queue length"
    rule: str  # how it is derived: printed at start and stored with the value
    derive: Callable[[DataSize], Any]
    valid: Callable[[Any], bool]
    valid_range: str  # what ``valid`` accepts, for the error: "must be >= 1"

    @property
    def help(self) -> str:
        return f"{self.methods} recipes: {self.what} (default: derived)"


_METHOD_KNOBS: dict[str, MethodKnob] = {}


def declare_method_knob(knob: MethodKnob) -> MethodKnob:
    """Declare a method argument that :func:`derive_recipe` derives from the data's size (once per argument)."""
    if knob.arg in _METHOD_KNOBS:
        raise ValueError(f"method knob {knob.arg!r} is already declared ({_METHOD_KNOBS[knob.arg].option})")
    _METHOD_KNOBS[knob.arg] = knob
    return knob


def method_knobs() -> dict[str, MethodKnob]:
    """Every declared method knob by argument name (the recipe modules that declare them are imported first)."""
    from ltzoo.submodules import import_submodules

    import_submodules("ltzoo.recipes")
    return dict(_METHOD_KNOBS)
