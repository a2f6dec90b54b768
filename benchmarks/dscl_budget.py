"""DSCL + PBSD against CE as the epoch budget grows, on fmnist_lt.

The zoo's fmnist_lt recipes all spend CE's 30-epoch budget, and at that budget the contrastive
recipes trail CE (``benchmarks/results/accuracy.md``). The paper trains DSCL for 200 (ImageNet-LT) to
400 epochs, and a momentum encoder and a feature queue need steps to warm up. This benchmark asks
whether the gap to CE closes when both get more epochs.

- Arms: ``ce_resnet32.fmnist_lt`` and ``dscl_pbsd_resnet32.fmnist_lt``, each at every budget of
  ``--budgets`` (default 30 and 90 epochs). A budget rescales the recipe's stages in proportion
  (``ltzoo.recipes.base.scale_stages``: DSCL's 24 + 6 becomes 72 + 18 at 90), with warm-up and milestones.
- For each seed (default 0 only: a 90-epoch DSCL + PBSD run takes about 40 min on one core), model
  selection on val; test all / many / medium / few top-1 as mean +- sample std over seeds.
- The 30-epoch runs are the zoo recipes, so they are reused from the accuracy benchmark
  (``common.train_seeded`` finds a finished run of the same recipe, seed and data anywhere under runs/).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dscl_budget.py           # full: 2 arms x 2 budgets, seed 0
    .venv/bin/python benchmarks/dscl_budget.py --quick                      # plumbing check, a minute

Writes ``benchmarks/results/dscl_budget.{json,md}`` (``dscl_budget_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from common import (  # type: ignore[import-not-found]
    GROUPS,
    WORK_DIR,
    fmt_mean_std,
    markdown_table,
    run_jobs,
    run_record,
    summary_by_group,
    train_seeded,
    write_results,
)

ARMS = {"ce": "ce_resnet32.fmnist_lt", "dscl_pbsd": "dscl_pbsd_resnet32.fmnist_lt"}
LABELS = {"ce": "CE", "dscl_pbsd": "DSCL + PBSD"}


def run_arm(arm: str, budget: int, seed: int, work_dir: Path, threads: int, quick: bool) -> dict[str, Any]:
    import torch

    from ltzoo.registry import get_entry

    torch.set_num_threads(threads)
    recipe = get_entry(ARMS[arm]).recipe()
    native = sum(stage.epochs for stage in recipe.stages)
    print(f"[dscl_budget] {arm} {budget} epochs seed {seed}", flush=True)
    if quick:
        limits: dict[str, Any] = {"epochs": 2, "steps_per_epoch": 2}
    else:
        limits = {} if budget == native else {"epochs": budget}  # the native budget is the zoo recipe: reused
    metrics = train_seeded(f"{arm}_{budget}ep.fmnist_lt", seed, work_dir, recipe=recipe, **limits)
    return run_record(metrics, arm=arm, budget=budget, seed=seed)


def _markdown(report: dict[str, Any]) -> str:
    rows = []
    for key, cell in report["cells"].items():
        runs = cell["runs"]
        rows.append([LABELS[cell["arm"]], cell["budget"], *[fmt_mean_std(r["test"][g] for r in runs) for g in GROUPS],
                     fmt_mean_std(r["val"]["all"] for r in runs),
                     fmt_mean_std([r["train_time_s"] / 60 for r in runs], digits=1)])
    gap_rows = [[budget, f"{gap['test_all']:+.2f}", f"{gap['test_few']:+.2f}", f"{gap['val_all']:+.2f}"]
                for budget, gap in report["gap_to_ce"].items()]
    return "\n".join([
        "## DSCL + PBSD vs CE as the epoch budget grows (fmnist_lt)"
        + (" (quick plumbing run: not a result)" if report["quick"] else ""),
        "",
        f"{len(report['seeds'])} seed(s) {report['seeds']}; every budget rescales the recipe's stages in proportion; "
        "model selection on val; test top-1 (%) as mean ± sample std. \"train min\" is each run's training wall "
        "time with one thread, next to other jobs on the 2 cores (the step cost is measured alone in "
        "`dscl_ablation`).",
        "",
        markdown_table(["method", "epochs", "test all", "test many", "test medium", "test few", "val all",
                        "train min"], rows),
        "",
        "DSCL + PBSD minus CE, in points (mean over seeds):",
        "",
        markdown_table(["epochs", "test all", "test few", "val all"], gap_rows),
    ])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs of 2 steps per run: a plumbing check")
    parser.add_argument("--budgets", type=int, nargs="+", default=[30, 90], help="total epochs (default 30 90)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="default 0")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads per run")
    parser.add_argument("--jobs", type=int, default=2, help="training runs in parallel (default 2: one per core)")
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if any(budget < 2 for budget in args.budgets):
        parser.error("every budget needs at least 2 epochs (DSCL has two stages)")
    work_dir = args.work_dir or WORK_DIR / ("dscl_budget_quick" if args.quick else "dscl_budget")

    # The longest runs first, so that the two workers finish close together.
    jobs = [(arm, budget, seed, work_dir, args.threads, args.quick)
            for budget in sorted(args.budgets, reverse=True) for seed in args.seeds for arm in ("dscl_pbsd", "ce")]
    results = run_jobs(run_arm, jobs, args.jobs)
    cells: dict[str, Any] = {}
    for budget in sorted(args.budgets):
        for arm in ARMS:
            runs = [r for r in results if r["arm"] == arm and r["budget"] == budget]
            cells[f"{arm}@{budget}"] = {"arm": arm, "budget": budget, "runs": runs,
                                        "test": summary_by_group(runs, "test"), "val": summary_by_group(runs, "val")}
    def gap(budget: int, split: str, group: str) -> float:
        return cells[f"dscl_pbsd@{budget}"][split][group]["mean"] - cells[f"ce@{budget}"][split][group]["mean"]

    gap_to_ce = {budget: {"test_all": gap(budget, "test", "all"), "test_few": gap(budget, "test", "few"),
                          "val_all": gap(budget, "val", "all")} for budget in sorted(args.budgets)}
    report = {
        "quick": args.quick,
        "seeds": args.seeds,
        "budgets": sorted(args.budgets),
        "threads": args.threads,
        "dataset": "fmnist_lt",
        "cells": cells,
        "gap_to_ce": gap_to_ce,
    }
    markdown = _markdown(report)
    write_results("dscl_budget", report, markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
