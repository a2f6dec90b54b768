"""Training that two raced recipes share, done once.

Weight balancing's stage 1 is the ce_wd recipe (``declare_stage_as_method("wb", "stage1", "ce_wd")``): both
runs build the same model from the same seed and train it with the same objective, sampler and schedule, so up
to the end of that stage they are one run. :func:`stage_keys` names a run's state after an epoch by exactly what
determines it; when two candidates' keys agree, the race trains that state once. Every trial keeps a snapshot
of its checkpoints at each rung (:func:`keep`), and a trial whose run has a snapshot ahead of its own adopts the
furthest one (:func:`adopt`), relabelled as its own recipe, and trains only the epochs from there (ce_wd's rungs
fall at 14, 27 and 54 epochs of its 108, wb's at 15, 30 and 60 of its 120: wb trains 1, 3 and 6 of them).

The key is strict on purpose: every stage trained so far must be equal field by field (epochs, so the
learning-rate schedule, included) and train as the same method, and the arch, head, data, seed and precision
must agree. cRT's representation stage is CE's objective, but the zoo's cRT trains it for 100 epochs without
selection on val where CE trains 120 with it, so the two never share: their checkpoints differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ltzoo.selection.race import Candidate

SHARED_DIR = "shared"  # under the trial runs' folder: one folder per key, holding that state's checkpoints
OWNER_FILE = "trained_by.txt"  # in a snapshot: the recipe whose trial trained it


def run_recipe(candidate: Candidate, seed: int) -> Any:
    """The recipe as the race's Trainer runs it (the plan's epoch rescaling and the race seed applied)."""
    from ltzoo.recipe import scale_stages

    recipe = candidate.plan.recipe.replace(seed=seed)
    if candidate.plan.epochs is not None:
        recipe = recipe.replace(stages=scale_stages(recipe.stages, candidate.plan.epochs))
    return recipe


def stage_keys(candidate: Candidate, seed: int, train_options: dict[str, Any] | None) -> list[tuple[int, int, str]]:
    """``(first, last, key)`` per stage: the run's state after an epoch in ``first..last`` (counted over the whole
    recipe) is another candidate's at the same epoch exactly when their keys for it agree. Empty when nothing
    can be shared (a fine-tuning start, whose parent weights the recipe does not name)."""
    from ltzoo.engine.objective import stage_trains_as
    from ltzoo.recipe import canonical_recipe

    if candidate.plan.model is not None:
        return []
    recipe = run_recipe(candidate, seed)
    canonical = canonical_recipe(recipe.to_dict()) or {}
    fields = {k: v for k, v in canonical.items() if k not in ("method", "method_args", "stages")}
    trained_so_far: list[Any] = []
    keys, before = [], 0
    for stage_dict, stage in zip(canonical["stages"], recipe.stages):
        same_as = stage_trains_as(recipe.method, stage.name)
        trained_so_far.append([stage_dict, [same_as, {}] if same_as else [recipe.method, canonical["method_args"]]])
        what = {
            "fields": fields,
            "stages": trained_so_far,
            "data": candidate.plan.data.index_sha256,
            "train_options": train_options or {},
        }
        key = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]
        keys.append((before + 1, before + stage.epochs, key))
        before += stage.epochs
    return keys


def _snapshot(keys: list[tuple[int, int, str]], shared_root: Path, epoch: int) -> Path | None:
    for first, last, key in keys:
        if first <= epoch <= last:
            return shared_root / key / f"epoch_{epoch:05d}"
    return None


def keep(keys: list[tuple[int, int, str]], run_dir: Path, shared_root: Path, trained_by: str) -> None:
    """Snapshot ``run_dir``'s checkpoints at the epoch they are at (once: the first trial there keeps it)."""
    from ltzoo.names import CHECKPOINT_DIR

    target = _snapshot(keys, shared_root, epochs_done(run_dir))
    if target is None or target.exists():
        return
    staging = target.parent / f".{target.name}.{os.getpid()}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(run_dir / CHECKPOINT_DIR, staging)
    (staging / OWNER_FILE).write_text(trained_by)
    try:
        staging.rename(target)  # atomic: a reader sees all of the snapshot or none of it
    except OSError:  # another worker kept the same state first: theirs is as good
        shutil.rmtree(staging, ignore_errors=True)


def adopt(keys: list[tuple[int, int, str]], run_dir: Path, shared_root: Path, recipe: Any, epochs: int) -> str | None:
    """Seed ``run_dir`` with the furthest snapshot of the same run at or before ``epochs`` that is ahead of
    its own checkpoint, relabelled as ``recipe``'s (so the Trainer resumes it as this run's); returns the recipe
    whose trial trained it, or None when there is none."""
    import torch

    from ltzoo.names import CHECKPOINT_DIR, LAST_CHECKPOINT
    from ltzoo.runs import atomic_torch_save

    done = epochs_done(run_dir)
    found = [
        snapshot
        for epoch in range(epochs, done, -1)
        if (snapshot := _snapshot(keys, shared_root, epoch)) is not None and snapshot.is_dir()
    ]
    if not found:
        return None
    source, target = found[0], run_dir / CHECKPOINT_DIR
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(OWNER_FILE))
    state = torch.load(target / LAST_CHECKPOINT, map_location="cpu", weights_only=True)
    state["recipe"] = recipe.to_dict()
    atomic_torch_save(state, target / LAST_CHECKPOINT)
    return (source / OWNER_FILE).read_text()


def epochs_done(run_dir: Path) -> int:
    """Epochs of the whole recipe that ``run_dir``'s last checkpoint has trained (0 without one)."""
    import torch

    from ltzoo.names import CHECKPOINT_DIR, LAST_CHECKPOINT

    path = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    if not path.is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    stages = state["recipe"]["stages"]
    return sum(stage["epochs"] for stage in stages[: state["stage_index"]]) + state["epochs_done"]
