"""``ltzoo select --data fmnist_lt``: how long the answer takes, what it picks, and whether a cheap race ranks the
recipes as the full budget does.

Reports (issue 29): the wall time (race, winner, total); the pick; the pick's test top-1 over its winner seeds
against every row of the full accuracy table (``benchmarks/results/accuracy.json``; calibrated rows from
``calibration.json`` when present); and, per rung, the Spearman rank correlation between the rung's val order
and the full-budget val order of the accuracy table.

First it asks whether the zoo's own budget (120 epochs per recipe) can be raced here at all: the command's own
throughput probe says how long the first rung needs with ``--workers``, and what the winner's seeds would cost.
Then it races at ``--epochs`` (default 30, a quarter of the zoo's budget; ``--epochs 0`` races the zoo's budget).

    .venv/bin/python -m benchmarks.select [--epochs 30] [--workers 2] [--budget-minutes 60] [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from benchmarks.common import RESULTS_DIR, WORK_DIR, fmt_mean_std, markdown_table, mean_std, write_results


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None for fewer than 3 pairs."""
    from scipy.stats import spearmanr

    return None if len(a) < 3 else float(spearmanr(a, b).statistic)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 recipes, 8 epochs of 2 steps: plumbing only")
    parser.add_argument("--budget-minutes", type=float, default=60.0)
    parser.add_argument("--epochs", type=int, default=30, help="every recipe's full budget (0: the zoo's own)")
    parser.add_argument("--workers", type=int, default=2, help="race and winner processes (default 2: the 2 cores)")
    args = parser.parse_args(argv)

    from ltzoo.selection.job import SelectOptions, select

    zoo_budget = None if args.quick else zoo_budget_estimate(args.workers)
    out = WORK_DIR / "select" / ("quick" if args.quick else f"full_{args.epochs or 'zoo'}ep_{args.workers}w")
    settings = (
        {
            "recipes": ("ce_resnet32.fmnist_lt", "ldam_drw_resnet32.fmnist_lt", "iccl_resnet32.fmnist_lt"),
            "epochs": 8,
            "steps_per_epoch": 2,
            "winner_seeds": (0,),
        }
        if args.quick
        else {"epochs": args.epochs or None}
    )
    started = time.time()
    selection = select(
        SelectOptions(data="fmnist_lt", out=out, budget_minutes=args.budget_minutes, workers=args.workers, **settings)
    )
    wall = time.time() - started
    table = json.loads((RESULTS_DIR / "accuracy.json").read_text())["rows"]
    summary = json.loads((out / "select.json").read_text())
    pick_test = [seed["test"] for seed in summary["seeds"].values()]
    rows = [[name.split(".")[0], fmt_mean_std(r["all"] for r in row["test"])] for name, row in table.items()]
    calibrated = calibrated_rows()
    rows += [
        [f"{name.split('.')[0]}, calibrated ({len(tests)} seeds)", fmt_mean_std(tests)]
        for name, tests in calibrated.items()
    ]
    full_val = {name: mean_std(r["all"] for r in row["val"])[0] for name, row in table.items()}
    correlations = {}
    for step in (1, 2, 4):
        pairs = [
            (row.rungs[step]["val_all"], full_val[row.recipe])
            for row in selection.leaderboard
            if step in row.rungs and row.recipe in full_val
        ]
        correlations[step] = spearman([p[0] for p in pairs], [p[1] for p in pairs])
    report = {
        "quick": args.quick,
        "epochs": args.epochs or "zoo",
        "workers": args.workers,
        "budget_minutes": args.budget_minutes,
        "zoo_budget": zoo_budget,
        "wall_minutes": wall / 60,
        "race_minutes": selection.seconds["race"] / 60,
        "pick": selection.winner,
        "pick_test_all": pick_test,
        "spearman_by_rung": correlations,
        "leaderboard": [row.to_dict() for row in selection.leaderboard],
    }
    best = max(
        [mean_std(r["all"] for r in row["test"])[0] for row in table.values()]
        + [mean_std(tests)[0] for tests in calibrated.values()]
    )
    markdown = "\n".join(
        [
            "## `ltzoo select --data fmnist_lt`: the answer, and how soon",
            "",
            f"Wall time {wall / 60:.1f} min (race {selection.seconds['race'] / 60:.1f} min; target 60). Pick: "
            f"**{selection.winner}**, test top-1 over its seeds {fmt_mean_std(pick_test)} (best row of the full table "
            f"{best:.2f}; target: within 1 point).",
            "",
            *([_zoo_budget_line(zoo_budget, args.workers), ""] if zoo_budget else []),
            f"Raced at {args.epochs or 'the zoo budget of 120'} epochs per recipe with {args.workers} workers "
            f"(--budget-minutes {args.budget_minutes:g}).",
            "",
            "Spearman rank correlation of each rung's val order with the full-budget val order (accuracy table): "
            + ", ".join(f"rung {s}: {'-' if c is None else f'{c:.2f}'}" for s, c in correlations.items())
            + ".",
            "",
            markdown_table(["row of the full table", "test all"], rows),
        ]
    )
    write_results("select", report, markdown)
    print(markdown)
    return report


def calibrated_rows() -> dict[str, list[float]]:
    """Test top-1 of every calibrated row of ``calibration.json`` (the runs calibrated there so far), by recipe."""
    path = RESULTS_DIR / "calibration.json"
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text())["rows"]
    return {name: [seed["calibrated"]["test"]["all"] for seed in seeds] for name, seeds in rows.items() if seeds}


def zoo_budget_estimate(workers: int) -> dict[str, float]:
    """What ``ltzoo select --data fmnist_lt`` at the zoo's own budget needs here, by the command's own probe: the
    first rung of every recipe, and the winner's three full-budget seeds (CE's throughput for both)."""
    from ltzoo.selection.job import SelectOptions, first_rung_minutes, plan_candidates

    options = SelectOptions(data="fmnist_lt", out=WORK_DIR / "select" / "probe", workers=workers)
    candidates = plan_candidates(options)
    first_rung, per_epoch = first_rung_minutes(candidates, options)
    full = next(iter(candidates.values())).full_epochs
    seeds = len(options.winner_seeds)
    return {
        "seconds_per_epoch": per_epoch * 60,
        "first_rung_minutes": first_rung,
        "winner_seeds_minutes": per_epoch * full * seeds / min(workers, seeds),
    }


def _zoo_budget_line(zoo: dict[str, float], workers: int) -> str:
    return (
        f"At the zoo's own budget (120 epochs per recipe) the command's probe measures {zoo['seconds_per_epoch']:.0f} "
        f"s per CE epoch here: the first rung alone needs {zoo['first_rung_minutes']:.0f} min with {workers} "
        f"workers and the winner's 3 seeds about {zoo['winner_seeds_minutes']:.0f} min, so the 60-minute target "
        "cannot be met on this machine at that budget (`ltzoo select` refuses the budget and says so)."
    )


if __name__ == "__main__":
    main()
