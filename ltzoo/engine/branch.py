"""Re-run the later stages of a multi-stage run with other settings, from the checkpoint between stages.

A two-stage recipe (DSCL, SCL, ICCL, ...) spends most of its time in stage 1. To compare stage-2
settings (DSCL's ``probe_bn`` or ``classifier_augment``) the trainer keeps the checkpoint at the end
of every stage but the last (``checkpoints/after_<stage>.pt``); :func:`branch_from_stage` seeds a new
run directory with it, so that ``Trainer(recipe, out, resume=True)`` trains only the stages after it.
The result is exactly what a full run of the new recipe would give (the earlier stages, their RNG
state included, are the same), which the function checks: the recipes must agree on everything up to
and including the branch stage, and their method arguments may differ only in those the method
declares as read by the later stages alone (:func:`ltzoo.engine.objective.stage_only_args`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ltzoo.engine.objective import stage_only_args
from ltzoo.errors import LtzooError
from ltzoo.recipe import Recipe, canonical_recipe
from ltzoo.runs import atomic_torch_save

BRANCH_FIELDS = ("method", "arch", "dataset", "head", "seed", "num_workers", "precision")


def _later_stage_args(recipe: Recipe, after: int) -> frozenset[str]:
    declared = stage_only_args(recipe.method)
    return frozenset().union(*(declared.get(stage.name, frozenset()) for stage in recipe.stages[after + 1 :]))


def check_branch(recorded: Recipe, wanted: Recipe, stage: str) -> int:
    """The index of ``stage`` when ``wanted`` may continue ``recorded`` after it; else an error naming the
    difference."""
    names = [s.name for s in recorded.stages]
    if stage not in names[:-1]:
        raise LtzooError(f"cannot branch after stage {stage!r}: the run's stages are {names} (not after the last)")
    index = names.index(stage)
    old, new = canonical_recipe(recorded.to_dict()) or {}, canonical_recipe(wanted.to_dict()) or {}
    different = [f for f in BRANCH_FIELDS if old.get(f) != new.get(f)]
    if old["stages"][: index + 1] != new["stages"][: index + 1]:
        different.append(f"stages up to {stage!r}")
    free = _later_stage_args(wanted, index)
    keys = set(old["method_args"]) | set(new["method_args"])
    different += [
        f"method_args.{k}" for k in sorted(keys - free) if old["method_args"].get(k) != new["method_args"].get(k)
    ]
    if different:
        raise LtzooError(
            f"the new recipe differs from the run's in {different}: a branch after {stage!r} may only change the "
            f"later stages and the method arguments they alone read ({sorted(free) or 'none declared'}); "
            "train it from scratch"
        )
    return index


def branch_from_stage(source_run: str | Path, recipe: Recipe, out_dir: str | Path, stage: str) -> dict[str, Any]:
    """Seed ``out_dir`` with ``source_run``'s checkpoint after ``stage``, relabelled as ``recipe``'s; returns
    the record to store in the new run's config (``branched_from``)."""
    from ltzoo.engine.trainer import CHECKPOINT_DIR, LAST_CHECKPOINT, stage_checkpoint_name

    source = Path(source_run) / CHECKPOINT_DIR / stage_checkpoint_name(stage)
    if not source.is_file():
        raise LtzooError(
            f"{source} not found: the run kept no checkpoint after stage {stage!r} (trained before "
            "ltzoo kept them, or that stage did not finish)"
        )
    state = torch.load(source, map_location="cpu", weights_only=True)
    check_branch(Recipe.from_dict(json.loads(json.dumps(state["recipe"]))), recipe, stage)
    state["recipe"] = recipe.to_dict()
    target = Path(out_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT
    if target.exists():
        raise LtzooError(f"{target} exists: branch into a new run directory")
    atomic_torch_save(state, target)
    return {"stage": stage, "source_run": Path(source_run).name}
