"""``ltzoo select``: which model to deploy on this long-tailed data, answered with a model.

1. Plan every candidate recipe on the data (the zoo's small recipes with the settings derived from the data, or
   a zoo dataset's own recipes) and check the budget against a short throughput probe.
2. Race them (:mod:`ltzoo.selection.race`, :mod:`ltzoo.selection.trials`): an Optuna study with a
   successive-halving pruner, scored on val, in ``--workers`` processes or on every machine sharing the storage.
3. The winner (the leaderboard's first row: the val order) trains at its full budget for every ``--seeds``
   winner seed (the race's own run continues from its checkpoint), the seed with the best val is calibrated
   (``ltzoo calibrate --method auto``), exported with the per-split gate, carded, and pushed with ``--push``.

Everything lands under ``--out``: ``study.journal``, ``trials/``, ``leaderboard.{json,md,png}``, ``winner/`` (the
seeds' runs, ``calibrated/`` with its ``README.md`` card and ``onnx/``), and ``select.json``.
"""

from __future__ import annotations

import logging
import multiprocessing
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ltzoo.errors import BadHyperParameterError, LtzooError
from ltzoo.selection.candidates import SelectOptions, make_race, plan_candidates
from ltzoo.selection.race import Candidate

log = logging.getLogger("ltzoo.select")

RACE_SHARE = 0.5  # of --budget-minutes for the race; the winner's seeds, calibration and export take the rest


@dataclass
class Selection:
    winner: str
    leaderboard: list[Any]
    winner_runs: list[Path] = field(default_factory=list)
    calibrated: Path | None = None
    onnx: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def probe_minutes_per_epoch(candidate: Candidate, steps_per_epoch: int | None, threads: int | None = None) -> float:
    """Minutes one epoch of ``candidate`` takes here: three timed steps (after one warm-up step) for each of the
    epoch's steps, and the evaluation of val that ends every epoch; with ``threads`` intra-op threads (the race's
    worker processes use one each). A lower bound for the recipes whose steps cost more (two views, RSG)."""
    import torch

    from ltzoo.engine.evaluator import TorchPredictor, evaluate_split
    from ltzoo.engine.trainer import Trainer

    plan = candidate.plan
    stage = plan.recipe.stages[0]
    full_steps = max(1, len(plan.data.train) // stage.batch_size)
    if steps_per_epoch is not None:
        full_steps = min(full_steps, steps_per_epoch)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads or threads_before)
    try:
        with tempfile.TemporaryDirectory(prefix="ltzoo-select-probe-") as tmp:
            timings = []
            for steps in (1, 4):
                started = time.perf_counter()
                trainer = Trainer(
                    plan.recipe.replace(
                        stages=[replace(stage, epochs=1, warmup_epochs=0, milestones=(), select_on_val=False)]
                    ),
                    Path(tmp) / str(steps),
                    data=plan.data,
                    max_steps=steps,
                    steps_per_epoch=steps,
                    until_epoch=1,
                )
                trainer.run()
                timings.append(time.perf_counter() - started)
            started = time.perf_counter()
            evaluate_split(TorchPredictor(trainer.model), plan.data, "val")
            val_seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads_before)
    per_step = max(timings[1] - timings[0], 1e-3) / 3
    return (per_step * full_steps + val_seconds) / 60


def first_rung_minutes(candidates: dict[str, Candidate], options: SelectOptions) -> tuple[float, float]:
    """(minutes the first rung of every recipe needs here with ``options.workers``, minutes per epoch of the first
    recipe): from a short throughput probe of the first recipe."""
    first = next(iter(candidates.values()))
    per_epoch = probe_minutes_per_epoch(first, options.steps_per_epoch, threads=1 if options.workers > 1 else None)
    return sum(c.rung_epochs[0] for c in candidates.values()) * per_epoch / max(options.workers, 1), per_epoch


def check_budget(candidates: dict[str, Candidate], options: SelectOptions) -> float:
    """The minutes the first rung of every recipe needs here; a budget whose race share is smaller is refused."""
    needed, per_epoch = first_rung_minutes(candidates, options)
    if options.budget_minutes * RACE_SHARE < needed:
        minimum = needed / RACE_SHARE
        raise BadHyperParameterError(
            f"--budget-minutes {options.budget_minutes:g} is too small for even the first rung of {len(candidates)} "
            f"recipes, which needs about {needed:.1f} minutes here ({per_epoch * 60:.1f} s per epoch of "
            f"{next(iter(candidates))}); give at least {minimum:.0f} (the race takes {RACE_SHARE:.0%} of the "
            "budget), fewer --recipes, a smaller --epochs or more --workers"
        )
    return needed


def _worker(options: SelectOptions, deadline: float) -> int:
    """A race worker in its own process: plans the candidates itself (nothing heavy crosses the process)."""
    import torch

    torch.set_num_threads(1)
    return make_race(options, plan_candidates(options), deadline).work()


def run_race(options: SelectOptions, candidates: dict[str, Candidate], deadline: float) -> None:
    if options.workers <= 1:
        make_race(options, candidates, deadline).work()
        return
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each: no forked torch threads
    workers = [context.Process(target=_worker, args=(options, deadline)) for _ in range(options.workers)]
    for process in workers:
        process.start()
    for process in workers:
        process.join()


def select(options: SelectOptions) -> Selection:
    from ltzoo.selection import leaderboard
    from ltzoo.selection.race import open_storage

    started = time.time()
    candidates = plan_candidates(options)
    if options.storage is not None:
        open_storage(options.storage, options.out)  # a URL that cannot be opened fails before any compute
    check_budget(candidates, options)
    make_race(options, candidates, None).study()  # creates the study and queues the recipes: after every check
    run_race(options, candidates, started + options.budget_minutes * 60 * RACE_SHARE)
    race_done = time.time()
    rows = leaderboard.rows_of(make_race(options, candidates, None).study())
    if not rows or rows[0].state != "completed the race":
        raise LtzooError(
            f"no recipe completed the race (leaderboard: {options.out / 'leaderboard.md'}); give more "
            "--budget-minutes, or run `ltzoo select` again with the same --out to continue it"
        )
    selection = Selection(rows[0].recipe, rows)
    selection.seconds["race"] = race_done - started
    leaderboard.write(
        rows,
        options.out,
        {"options": options.to_dict(), "winner": selection.winner, "race_seconds": round(race_done - started, 1)},
    )
    if not options.race_only:
        from ltzoo.selection.finalize import finalize

        finalize(selection, candidates[selection.winner], options, make_race(options, candidates, None))
    selection.seconds["total"] = time.time() - started
    return selection
