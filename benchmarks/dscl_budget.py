"""DSCL + PBSD against CE as the epoch budget grows, on fmnist_lt.

The zoo's fmnist_lt recipes all spend CE's 30-epoch budget, and at that budget the contrastive
recipes trail CE (``benchmarks/results/accuracy.md``). The paper trains DSCL for 200 (ImageNet-LT) to
400 epochs, and a momentum encoder and a feature queue need steps to warm up. This benchmark asks
whether the gap to CE closes when both get more epochs.

- Arms: ``ce_resnet32.fmnist_lt`` and ``dscl_pbsd_resnet32.fmnist_lt``, each at every budget of
  ``--budgets`` (default 30 and 90 epochs). A budget rescales the recipe's stages in proportion
  (``ltzoo.recipe.scale_stages``: DSCL's 24 + 6 becomes 72 + 18 at 90), with warm-up and milestones.
- For each seed (default 0 only: a 90-epoch DSCL + PBSD run takes about 40 min on one core), model
  selection on val; test all / many / medium / few top-1 as mean +- sample std over seeds.
- The 30-epoch runs are the zoo recipes, so they are reused from the accuracy benchmark
  (``common.train_seeded`` finds a finished run of the same recipe, seed and data anywhere under runs/).

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.dscl_budget           # full: 2 arms x 2 budgets, seed 0
    .venv/bin/python -m benchmarks.dscl_budget --quick                      # plumbing check, a minute

Writes ``benchmarks/results/dscl_budget.{json,md}`` (``dscl_budget_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.common import (
    GROUPS,
    BenchmarkArgs,
    ablation_main,
    fmt_mean_std,
    markdown_table,
    run_record,
    summary_by_group,
    train_seeded,
)

ARMS = {"ce": "ce_resnet32.fmnist_lt", "dscl_pbsd": "dscl_pbsd_resnet32.fmnist_lt"}
LABELS = {"ce": "CE", "dscl_pbsd": "DSCL + PBSD"}


def run_arm(cell: tuple[str, int], seed: int, args: BenchmarkArgs) -> dict[str, Any]:
    """One seed of ``cell`` = (arm, budget in epochs)."""
    from ltzoo.registry import get_entry

    arm, budget = cell
    recipe = get_entry(ARMS[arm]).recipe()
    native = recipe.total_epochs
    print(f"[dscl_budget] {arm} {budget} epochs seed {seed}", flush=True)
    if args.quick:
        limits: dict[str, Any] = {"epochs": 2, "steps_per_epoch": 2}
    else:
        limits = {} if budget == native else {"epochs": budget}  # the native budget is the zoo recipe: reused
    metrics = train_seeded(f"{arm}_{budget}ep.fmnist_lt", seed, args.work_dir, recipe=recipe, **limits)
    return run_record(metrics, arm=arm, budget=budget, seed=seed)


def _markdown(report: dict[str, Any]) -> str:
    rows = []
    for cell in report["cells"].values():
        runs = cell["runs"]
        rows.append(
            [
                LABELS[cell["arm"]],
                cell["budget"],
                *[fmt_mean_std(r["test"][g] for r in runs) for g in GROUPS],
                fmt_mean_std(r["val"]["all"] for r in runs),
                fmt_mean_std([r["train_time_s"] / 60 for r in runs], digits=1),
            ]
        )
    gap_rows = [
        [budget, f"{gap['test_all']:+.2f}", f"{gap['test_few']:+.2f}", f"{gap['val_all']:+.2f}"]
        for budget, gap in report["gap_to_ce"].items()
    ]
    return "\n".join(
        [
            "## DSCL + PBSD vs CE as the epoch budget grows (fmnist_lt)"
            + (" (quick plumbing run: not a result)" if report["quick"] else ""),
            "",
            f"{len(report['seeds'])} seed(s) {report['seeds']}; every budget rescales the recipe's stages in "
            'proportion; model selection on val; test top-1 (%) as mean ± sample std. "train min" is each run\'s '
            "training wall time with one thread, next to other jobs on the 2 cores (the step cost is measured alone in "
            "`dscl_ablation`).",
            "",
            markdown_table(
                ["method", "epochs", "test all", "test many", "test medium", "test few", "val all", "train min"], rows
            ),
            "",
            "DSCL + PBSD minus CE, in points (mean over seeds):",
            "",
            markdown_table(["epochs", "test all", "test few", "val all"], gap_rows),
        ]
    )


def budget_cells(args: BenchmarkArgs) -> list[tuple[str, int]]:
    """(arm, budget) pairs, the longest runs first, so that the two workers finish close together."""
    return [(arm, budget) for budget in sorted(args.options.budgets, reverse=True) for arm in ("dscl_pbsd", "ce")]


def summarise(
    runs_by_cell: dict[tuple[str, int], list[dict[str, Any]]], args: BenchmarkArgs
) -> tuple[dict[str, Any], str]:
    budgets = sorted(args.options.budgets)
    cells: dict[str, Any] = {}
    for budget in budgets:
        for arm in ARMS:
            runs = runs_by_cell[(arm, budget)]
            cells[f"{arm}@{budget}"] = {
                "arm": arm,
                "budget": budget,
                "runs": runs,
                "test": summary_by_group(runs, "test"),
                "val": summary_by_group(runs, "val"),
            }

    def gap(budget: int, split: str, group: str) -> float:
        return cells[f"dscl_pbsd@{budget}"][split][group]["mean"] - cells[f"ce@{budget}"][split][group]["mean"]

    gap_to_ce = {
        budget: {
            "test_all": gap(budget, "test", "all"),
            "test_few": gap(budget, "test", "few"),
            "val_all": gap(budget, "val", "all"),
        }
        for budget in budgets
    }
    report = {
        "quick": args.quick,
        "seeds": args.seeds,
        "budgets": budgets,
        "threads": args.threads,
        "dataset": "fmnist_lt",
        "cells": cells,
        "gap_to_ce": gap_to_ce,
    }
    return report, _markdown(report)


def _budget(text: str) -> int:
    if int(text) < 2:
        raise argparse.ArgumentTypeError("every budget needs at least 2 epochs (DSCL has two stages)")
    return int(text)


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budgets", type=_budget, nargs="+", default=[30, 90], help="total epochs (default 30 90)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return ablation_main(
        "dscl_budget",
        budget_cells,
        run_arm,
        summarise,
        argv,
        description=__doc__.splitlines()[0],
        add_flags=_flags,
        default_seeds=(0,),
        quick_help="1 seed, 2 epochs of 2 steps per run: a plumbing check",
    )


if __name__ == "__main__":
    main()
