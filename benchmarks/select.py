"""``ltzoo select --data fmnist_lt``: how long the answer takes, what it picks, and whether a cheap race ranks the
recipes as the full budget does.

Reports (issue 29): the wall time (race, winner, total); the pick; the pick's test top-1 over its winner seeds
against every row of the full accuracy table (``benchmarks/results/accuracy.json``; calibrated rows from
``calibration.json`` when present); and, per rung, the Spearman rank correlation between the rung's val order
and the full-budget val order of the accuracy table.

    .venv/bin/python -m benchmarks.select [--budget-minutes 60] [--quick]
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
    args = parser.parse_args(argv)

    from ltzoo.selection.job import SelectOptions, select

    out = WORK_DIR / "select" / ("quick" if args.quick else "full")
    quick = (
        {
            "recipes": ("ce_resnet32.fmnist_lt", "ldam_drw_resnet32.fmnist_lt", "iccl_resnet32.fmnist_lt"),
            "epochs": 8,
            "steps_per_epoch": 2,
            "winner_seeds": (0,),
        }
        if args.quick
        else {}
    )
    started = time.time()
    selection = select(SelectOptions(data="fmnist_lt", out=out, budget_minutes=args.budget_minutes, **quick))
    wall = time.time() - started
    table = json.loads((RESULTS_DIR / "accuracy.json").read_text())["rows"]
    summary = json.loads((out / "select.json").read_text())
    pick_test = [seed["test"] for seed in summary["seeds"].values()]
    rows = [[name.split(".")[0], fmt_mean_std(r["all"] for r in row["test"])] for name, row in table.items()]
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
        "wall_minutes": wall / 60,
        "race_minutes": selection.seconds["race"] / 60,
        "pick": selection.winner,
        "pick_test_all": pick_test,
        "spearman_by_rung": correlations,
        "leaderboard": [row.to_dict() for row in selection.leaderboard],
    }
    best = max(mean_std(r["all"] for r in row["test"])[0] for row in table.values())
    markdown = "\n".join(
        [
            "## `ltzoo select --data fmnist_lt`: the answer, and how soon",
            "",
            f"Wall time {wall / 60:.1f} min (race {selection.seconds['race'] / 60:.1f} min; target 60). Pick: "
            f"**{selection.winner}**, test top-1 over its seeds {fmt_mean_std(pick_test)} (best row of the full table "
            f"{best:.2f}; target: within 1 point).",
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


if __name__ == "__main__":
    main()
