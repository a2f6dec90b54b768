"""Recipe knobs that depend on the dataset's scale, derived for a user's dataset.

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
- **DSCL queue size**: the largest power of two <= N / 2, at least the first stage's batch, at most the
  official 65,536 (which is about half of ImageNet-LT; ltzoo's small recipes also keep about half).
- **ICCL centroid momentum**: a centroid averages over about one epoch of its class's updates. A class
  is updated in about min(1, batch / C) of the steps, so u = steps_per_epoch * min(1, batch / C)
  updates per epoch and m = 1 - 1 / u, clamped to [0.5, 0.99].
- **RSG head ratio**: the official 0.2 (the most frequent 20% of classes are the head), raised to one
  class when C < 5 (and at most C - 1), since RSG needs at least one head and one tail class.

Every value can be overridden (:class:`Overrides`, the ``ltzoo train`` options); the values and where
each came from are printed at start and stored in the run's ``config.json`` (``ltzoo.derived``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ltzoo.errors import BadHyperParameterError
from ltzoo.recipes.base import Recipe, scale_stages

EPOCHS_REFERENCE_IMAGES = 10_000
SCRATCH_EPOCHS = (30, 200)  # (floor, ceiling)
FINETUNE_EPOCHS = (10, 30)
MIN_STEPS_PER_EPOCH = 8
MIN_BATCH = 8
FINETUNE_LR_FACTOR = 0.1
MAX_QUEUE = 65_536
CENTROID_MOMENTUM_RANGE = (0.5, 0.99)
RSG_HEAD_RATIO = 0.2

# Method-argument knobs and the ``ltzoo train`` option that overrides each.
METHOD_KNOBS = {"queue_size": "--queue-size", "centroid_momentum": "--centroid-momentum", "head_ratio": "--head-ratio"}


@dataclass
class Overrides:
    """User-set values; ``None`` keeps the derived one. ``lr`` is the first stage's learning rate; the
    later stages keep their derived ratio to it. ``batch_size`` applies to every stage."""

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    queue_size: int | None = None
    centroid_momentum: float | None = None
    head_ratio: float | None = None

    def validate(self) -> None:
        for key in ("epochs", "batch_size", "queue_size"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise BadHyperParameterError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
        if self.lr is not None and not self.lr > 0:
            raise BadHyperParameterError(f"--lr must be > 0, got {self.lr}")
        if self.centroid_momentum is not None and not 0 <= self.centroid_momentum < 1:
            raise BadHyperParameterError(f"--centroid-momentum must be in [0, 1), got {self.centroid_momentum}")
        if self.head_ratio is not None and not 0 < self.head_ratio < 1:
            raise BadHyperParameterError(f"--head-ratio must be in (0, 1), got {self.head_ratio}")


def derived_epochs(train_size: int, finetune: bool) -> int:
    floor, ceiling = FINETUNE_EPOCHS if finetune else SCRATCH_EPOCHS
    return max(floor, min(ceiling, round(ceiling * EPOCHS_REFERENCE_IMAGES / max(train_size, 1))))


def batch_cap(train_size: int) -> int:
    return max(MIN_BATCH, 2 ** math.floor(math.log2(max(train_size / MIN_STEPS_PER_EPOCH, 1))))


def derived_queue_size(train_size: int, first_batch: int) -> int:
    return min(MAX_QUEUE, max(first_batch, 2 ** math.floor(math.log2(max(train_size / 2, 1)))))


def derived_centroid_momentum(train_size: int, batch_size: int, num_classes: int) -> float:
    steps = max(1, train_size // batch_size)  # the trainer's steps per epoch (single process)
    updates = steps * min(1.0, batch_size / num_classes)
    low, high = CENTROID_MOMENTUM_RANGE
    return round(min(high, max(low, 1.0 - 1.0 / max(updates, 1e-9))), 4)


def derived_head_ratio(num_classes: int) -> float:
    if 1 <= int(num_classes * RSG_HEAD_RATIO) <= num_classes - 1:
        return RSG_HEAD_RATIO
    head = min(max(int(num_classes * RSG_HEAD_RATIO), 1), num_classes - 1)
    ratio = head / num_classes
    # RSG takes int(C * ratio) classes: make sure float rounding cannot lose the one we meant.
    return ratio if int(num_classes * ratio) == head else (head + 1e-6) / num_classes


def _knob(value: Any, override: Any, rule: str, option: str) -> dict[str, Any]:
    return {"value": value if override is None else override, "from": "derived" if override is None else "override",
            "rule": rule, "option": option}


def derive_recipe(
    recipe: Recipe, train_size: int, num_classes: int, *, finetune: bool = False, overrides: Overrides | None = None
) -> tuple[Recipe, dict[str, Any]]:
    """The recipe adapted to a dataset of ``train_size`` images in ``num_classes`` classes, and a record of
    every derived knob (``{knob: {value, from, rule, option}}``) for printing and for ``config.json``."""
    overrides = overrides or Overrides()
    overrides.validate()
    for key, option in METHOD_KNOBS.items():
        if getattr(overrides, key) is not None and key not in recipe.method_args:
            raise BadHyperParameterError(
                f"{option} does not apply to the {recipe.method} recipe (its method has no {key!r}); "
                f"it sets {'DSCL' if key == 'queue_size' else 'ICCL' if key == 'centroid_momentum' else 'RSG'} recipes"
            )
    record: dict[str, Any] = {"train_images": train_size, "num_classes": num_classes, "finetune": finetune}

    epochs = derived_epochs(train_size, finetune)
    record["epochs"] = _knob(
        epochs, overrides.epochs,
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
        f"the recipe's, capped at the largest power of two <= N/{MIN_STEPS_PER_EPOCH} (here {cap})", "--batch-size",
    )

    lrs = [
        stage.lr * batch / stage.batch_size * (FINETUNE_LR_FACTOR if finetune and stage.train == "all" else 1.0)
        for stage, batch in zip(stages, batches)
    ]
    derived_lrs = {s.name: float(f"{lr:.6g}") for s, lr in zip(stages, lrs)}
    if overrides.lr is not None:
        lrs = [overrides.lr * lr / lrs[0] for lr in lrs]
    record["lr"] = _knob(
        derived_lrs, None if overrides.lr is None else {s.name: float(f"{lr:.6g}") for s, lr in zip(stages, lrs)},
        "the recipe's, scaled linearly with the batch" + (
            f"; x{FINETUNE_LR_FACTOR:g} for stages that train the backbone (fine-tuning)" if finetune else ""),
        "--lr (first stage; the others keep their ratio)",
    )
    stages = [
        dataclasses.replace(stage, batch_size=batch, lr=float(f"{lr:.6g}"))
        for stage, batch, lr in zip(stages, batches, lrs)
    ]

    method_args = dict(recipe.method_args)
    if "queue_size" in method_args:
        record["queue_size"] = _knob(
            derived_queue_size(train_size, batches[0]), overrides.queue_size,
            f"the largest power of two <= N/2, at least the batch, at most {MAX_QUEUE:,}", METHOD_KNOBS["queue_size"],
        )
        method_args["queue_size"] = record["queue_size"]["value"]
    if "centroid_momentum" in method_args:
        record["centroid_momentum"] = _knob(
            derived_centroid_momentum(train_size, batches[0], num_classes), overrides.centroid_momentum,
            "1 - 1/u, u = steps per epoch x min(1, batch/C) (about one epoch of a class's updates), in "
            f"[{CENTROID_MOMENTUM_RANGE[0]}, {CENTROID_MOMENTUM_RANGE[1]}]", METHOD_KNOBS["centroid_momentum"],
        )
        method_args["centroid_momentum"] = record["centroid_momentum"]["value"]
    if "head_ratio" in method_args:
        record["head_ratio"] = _knob(
            derived_head_ratio(num_classes), overrides.head_ratio,
            f"the official {RSG_HEAD_RATIO}, at least one head class and one tail class", METHOD_KNOBS["head_ratio"],
        )
        method_args["head_ratio"] = record["head_ratio"]["value"]

    changed = ", ".join(k.replace("_", " ") for k in ("epochs", "batch_size", "lr", "queue_size", "centroid_momentum",
                                                        "head_ratio") if k in record)
    notes = (f"{recipe.notes} Adapted to {train_size} training images in {num_classes} classes by ltzoo: {changed} "
             "derived from the data or set by the user (config.json ltzoo.derived says which).").strip()
    return recipe.replace(stages=stages, method_args=method_args, notes=notes), record


def format_derived(record: dict[str, Any]) -> str:
    """The printed block: one line per knob with its value, where it came from and the option to change it."""
    def show(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
        return f"{value:g}" if isinstance(value, float) else str(value)

    knobs = [k for k in ("epochs", "batch_size", "lr", "queue_size", "centroid_momentum", "head_ratio") if k in record]
    values = {knob: show(record[knob]["value"]) for knob in knobs}
    width = max(len(v) for v in values.values())
    lines = [
        f"recipe settings for {record['train_images']} training images in {record['num_classes']} classes"
        + (" (fine-tuning)" if record.get("finetune") else "") + ", each changeable with the [option]:"
    ]
    for knob in knobs:
        entry = record[knob]
        how = f"derived: {entry['rule']}" if entry["from"] == "derived" else "set by you"
        lines.append(f"  {knob.replace('_', ' '):18s} {values[knob]:{width}s}  [{entry['option'].split(' ')[0]}] {how}")
    return "\n".join(lines)
