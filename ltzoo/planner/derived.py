"""Recipe settings that depend on the dataset's scale, derived for a user's dataset (``ltzoo train --data``).

A zoo recipe is tuned for its dataset (CIFAR-100-LT: 10,847 images, ImageNet-LT: 115,846). On other
data, :func:`derive_recipe` keeps the method (stages, losses, schedules, samplers, method arguments)
and re-derives what scales with the data, from the training-set size N and class count C. These are
ltzoo's rules, not any paper's:

- **epochs** (total, spread over the stages in the recipe's proportions): 200 up to 10,000 training
  images (the CIFAR-LT budget of the zoo's recipes), then 200 * 10,000 / N, at least 30, so large sets
  get about two million image presentations; fine-tuning (``--init``): the same with 30 and 10.
- **batch size** (each stage): the recipe's, capped at the largest power of two <= N / 8 (at least 8)
  so an epoch has about 8 or more steps.
- **learning rate** (each stage): scaled linearly with the batch (Goyal et al. 2017); when
  fine-tuning, stages that train the backbone use a tenth of it (the usual fine-tuning practice).
- **method arguments that scale with the data**: each method declares its own in its recipe module
  (:class:`ltzoo.recipe.MethodKnob`, :func:`ltzoo.recipe.declare_method_knob`), e.g. DSCL's queue size in
  ``ltzoo/recipes/dscl.py``; a recipe whose method arguments hold one gets it derived from N, C and the first
  stage's batch.

Every value can be overridden (:class:`Overrides`, the ``ltzoo train`` options, one per method knob); the
values and where each came from are printed at start and stored in the run's ``config.json``
(``ltzoo.derived``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ltzoo.errors import BadHyperParameterError
from ltzoo.recipe import DataSize, Recipe, StageConfig, method_knobs, scale_stages

EPOCHS_REFERENCE_IMAGES = 10_000
SCRATCH_EPOCHS = (30, 200)  # (floor, ceiling)
FINETUNE_EPOCHS = (10, 30)
MIN_STEPS_PER_EPOCH = 8
MIN_BATCH = 8
FINETUNE_LR_FACTOR = 0.1
# The record's keys that describe the data rather than a knob.
RECORD_FACTS = ("train_images", "num_classes", "finetune")


@dataclass
class Overrides:
    """User-set values; ``None`` (or absent) keeps the derived one. ``lr`` is the first stage's learning rate;
    the later stages keep their derived ratio to it. ``batch_size`` applies to every stage. ``method_args``
    sets method knobs by argument name (``{"queue_size": 64}``)."""

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    trainable: str | None = None  # all | head | last:N: how much of the backbone trains (--trainable)
    method_args: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        for key in ("epochs", "batch_size"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise BadHyperParameterError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
        if self.lr is not None and not self.lr > 0:
            raise BadHyperParameterError(f"--lr must be > 0, got {self.lr}")
        if self.trainable is not None:
            StageConfig(train=self.trainable)  # "all", "head" or "last:N", or an error that lists them
        knobs = method_knobs()
        for key, value in self.method_args.items():
            if key not in knobs:
                raise BadHyperParameterError(f"no method derives {key!r} from the data; knobs: {sorted(knobs)}")
            if not knobs[key].valid(value):
                raise BadHyperParameterError(f"{knobs[key].option} {knobs[key].valid_range}, got {value}")


def derived_epochs(train_size: int, finetune: bool) -> int:
    floor, ceiling = FINETUNE_EPOCHS if finetune else SCRATCH_EPOCHS
    return max(floor, min(ceiling, round(ceiling * EPOCHS_REFERENCE_IMAGES / max(train_size, 1))))


def batch_cap(train_size: int) -> int:
    return max(MIN_BATCH, 2 ** math.floor(math.log2(max(train_size / MIN_STEPS_PER_EPOCH, 1))))


def _knob(value: Any, override: Any, rule: str, option: str) -> dict[str, Any]:
    return {
        "value": value if override is None else override,
        "from": "derived" if override is None else "override",
        "rule": rule,
        "option": option,
    }


def _derived_lrs(
    stages: list[StageConfig], batches: list[int], finetune: bool, override: float | None, record: dict[str, Any]
) -> list[float]:
    """Each stage's lr, scaled with its batch (and for fine-tuning); ``--lr`` sets the first, the others keep their
    ratio. Recorded in ``record["lr"]``."""
    lrs = [
        stage.lr * batch / stage.batch_size * (FINETUNE_LR_FACTOR if finetune and stage.train != "head" else 1.0)
        for stage, batch in zip(stages, batches)
    ]
    derived_lrs = {s.name: float(f"{lr:.6g}") for s, lr in zip(stages, lrs)}
    if override is not None:
        lrs = [override * lr / lrs[0] for lr in lrs]
    record["lr"] = _knob(
        derived_lrs,
        None if override is None else {s.name: float(f"{lr:.6g}") for s, lr in zip(stages, lrs)},
        "the recipe's, scaled linearly with the batch"
        + (
            f"; x{FINETUNE_LR_FACTOR:g} for stages that train the backbone, all of it or its last N groups "
            "(fine-tuning); a head-only stage keeps the full lr"
            if finetune
            else ""
        ),
        "--lr (first stage; the others keep their ratio)",
    )
    return lrs


def derive_recipe(
    recipe: Recipe, train_size: int, num_classes: int, *, finetune: bool = False, overrides: Overrides | None = None
) -> tuple[Recipe, dict[str, Any]]:
    """The recipe adapted to a dataset of ``train_size`` images in ``num_classes`` classes, and a record of
    every derived knob (``{knob: {value, from, rule, option}}``) for printing and for ``config.json``."""
    overrides = overrides or Overrides()
    overrides.validate()
    knobs = method_knobs()
    for key in overrides.method_args:
        if key not in recipe.method_args:
            raise BadHyperParameterError(
                f"{knobs[key].option} does not apply to the {recipe.method} recipe (its method has no {key!r}); "
                f"it sets {knobs[key].methods} recipes"
            )
    record: dict[str, Any] = {"train_images": train_size, "num_classes": num_classes, "finetune": finetune}

    epochs = derived_epochs(train_size, finetune)
    record["epochs"] = _knob(
        epochs,
        overrides.epochs,
        f"{(FINETUNE_EPOCHS if finetune else SCRATCH_EPOCHS)[1]} up to {EPOCHS_REFERENCE_IMAGES:,} training "
        f"images, then falling as 1/N to at least {(FINETUNE_EPOCHS if finetune else SCRATCH_EPOCHS)[0]}",
        "--epochs",
    )
    stages = scale_stages(recipe.stages, record["epochs"]["value"])

    cap = batch_cap(train_size)
    derived_batches = [min(stage.batch_size, cap) for stage in stages]
    batches = derived_batches if overrides.batch_size is None else [overrides.batch_size] * len(stages)
    record["batch_size"] = _knob(
        {s.name: b for s, b in zip(stages, derived_batches)},
        None if overrides.batch_size is None else {s.name: overrides.batch_size for s in stages},
        f"the recipe's, capped at the largest power of two <= N/{MIN_STEPS_PER_EPOCH} (here {cap})",
        "--batch-size",
    )

    if overrides.trainable is not None:  # the stages that train the backbone train as much of it as asked
        stages = [dataclasses.replace(s, train=overrides.trainable) if s.train == "all" else s for s in stages]
        record["trainable"] = _knob(
            overrides.trainable,
            overrides.trainable,
            "all: the whole backbone trains; last:N: its last N stages or blocks and the "
            "head (the rest frozen, BatchNorm statistics kept); head: the backbone frozen",
            "--trainable",
        )
    lrs = _derived_lrs(stages, batches, finetune, overrides.lr, record)
    stages = [
        dataclasses.replace(stage, batch_size=batch, lr=float(f"{lr:.6g}"))
        for stage, batch, lr in zip(stages, batches, lrs)
    ]

    method_args = dict(recipe.method_args)
    size = DataSize(train_size, num_classes, batches[0])
    for key in recipe.method_args:
        if key in knobs:
            knob = knobs[key]
            record[key] = _knob(knob.derive(size), overrides.method_args.get(key), knob.rule, knob.option)
            method_args[key] = record[key]["value"]

    changed = ", ".join(k.replace("_", " ") for k in record if k not in RECORD_FACTS)
    notes = (
        f"{recipe.notes} Adapted to {train_size} training images in {num_classes} classes by ltzoo: {changed} "
        "derived from the data or set by the user (config.json ltzoo.derived says which)."
    ).strip()
    return recipe.replace(stages=stages, method_args=method_args, notes=notes), record


def format_derived(record: dict[str, Any]) -> str:
    """The printed block: one line per knob with its value, where it came from and the option to change it."""

    def show(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
        return f"{value:g}" if isinstance(value, float) else str(value)

    knobs = [k for k in record if k not in RECORD_FACTS]
    values = {knob: show(record[knob]["value"]) for knob in knobs}
    width = max(len(v) for v in values.values())
    lines = [
        f"recipe settings for {record['train_images']} training images in {record['num_classes']} classes"
        + (" (fine-tuning)" if record.get("finetune") else "")
        + ", each changeable with the [option]:"
    ]
    for knob in knobs:
        entry = record[knob]
        how = f"derived: {entry['rule']}" if entry["from"] == "derived" else "set by you"
        lines.append(f"  {knob.replace('_', ' '):18s} {values[knob]:{width}s}  [{entry['option'].split(' ')[0]}] {how}")
    return "\n".join(lines)
