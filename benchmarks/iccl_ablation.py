"""ICCL ablation on fmnist_lt: CE; ICCL without interpolation; ICCL without stage 2; full ICCL.

- Every arm trains with the real trainer at the recipes' fmnist_lt budget (``FMNIST_EPOCHS``) for CE
  and for full ICCL (five sixths representation, one sixth classifier epochs); "no interpolation" keeps
  both stages but feeds each sample unmixed (x_a or x_b, lam in {0, 1}); "no stage 2" is ICCL's
  representation stage alone (the same epochs, its own classifier kept), so it isolates what the
  classifier stage adds.
- For each seed (3 by default): model selection on val; test all / many / medium / few top-1 reported
  as mean +- sample std over seeds.
- CE runs are named ``ce.fmnist_lt`` like in the other ablations, so a finished CE run of the same
  recipe and seed anywhere under ``runs/`` is reused (``common.train_seeded``).

All work runs with one intra-op thread (``--threads``): on the shared 2-core machine two threads per
process oversubscribe the cores and small convolutions get far slower.

    nice -n 10 .venv/bin/python -m benchmarks.iccl_ablation              # full: 4 arms x 3 seeds
    .venv/bin/python -m benchmarks.iccl_ablation --quick                 # plumbing check, minutes

Run directories go under ``--work-dir`` (default ``runs/benchmarks/iccl_ablation``); finished runs are
reused and interrupted ones resumed. Writes ``benchmarks/results/iccl_ablation.{json,md}``
(``iccl_ablation_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
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

# Seed-major, the arm that evaluates val every epoch first: a partial run is informative early.
RUN_ORDER = ("iccl_no_stage2", "iccl", "iccl_no_interpolation", "ce")
# The one published ICCL number that could be read (the paper's abstract; its tables were not readable,
# see ltzoo/methods/iccl.py): a gain in top-1 points over an unnamed baseline, at ResNet-50 scale.
PAPER_ICCL = {"inat2018_top1_gain": 2.8}
ARMS = {
    "ce": "CE (instance sampling)",
    "iccl_no_interpolation": "ICCL without interpolation",
    "iccl_no_stage2": "ICCL without stage 2",
    "iccl": "ICCL (full)",
}


def _recipe(arm: str) -> Any:
    from ltzoo.recipes.iccl import iccl_fmnist_lt, iccl_variant
    from ltzoo.registry import get_entry

    makers: dict[str, Callable[[], Any]] = {
        "ce": lambda: get_entry("ce_resnet32.fmnist_lt").recipe(),
        "iccl_no_interpolation": lambda: iccl_variant(iccl_fmnist_lt(), interpolation=False),
        "iccl_no_stage2": lambda: iccl_variant(iccl_fmnist_lt(), stage2=False),
        "iccl": iccl_fmnist_lt,
    }
    return makers[arm]()


def run_arm(arm: str, seed: int, args: BenchmarkArgs) -> dict[str, Any]:
    limits = {"epochs": 3, "steps_per_epoch": 2} if args.quick else {}  # quick: ICCL's stages become 2 + 1 epochs
    print(f"[iccl_ablation] {arm} seed {seed}", flush=True)
    metrics = train_seeded(f"{arm}.fmnist_lt", seed, args.work_dir, recipe=_recipe(arm), **limits)
    return run_record(metrics, arm=arm, seed=seed)


def _markdown(report: dict[str, Any]) -> str:
    arms = report["arms"]
    header = ["arm", "test all", "test many", "test medium", "test few", "val all", "epochs", "train time x CE"]
    ce_time = statistics.fmean(r["train_time_s"] for r in arms["ce"]["runs"]) if "ce" in arms else None
    rows = []
    for result in arms.values():
        runs = result["runs"]
        time_ratio = statistics.fmean(r["train_time_s"] for r in runs) / ce_time if ce_time else None
        rows.append(
            [
                result["label"],
                *[fmt_mean_std(r["test"][g] for r in runs) for g in GROUPS],
                fmt_mean_std(r["val"]["all"] for r in runs),
                result["epochs"],
                "-" if time_ratio is None else f"{time_ratio:.2f}",
            ]
        )
    return "\n".join(
        [
            "## ICCL ablation on fmnist_lt" + (" (quick plumbing run: not a result)" if report["quick"] else ""),
            "",
            f"{len(report['seeds'])} seed(s) {report['seeds']}, model selection on val, test top-1 (%) as mean ± "
            f"sample std; {report['threads']} thread(s) per run. Every ICCL hyper-parameter is ltzoo's choice "
            '(no official code; see `ltzoo/recipes/iccl.py`). "Without interpolation": each sample is x_a or '
            'x_b unmixed; "without stage 2": the representation stage\'s own classifier, no re-balancing. '
            f"Published anchor: the paper's abstract reports +{PAPER_ICCL['inat2018_top1_gain']} points top-1 on "
            "iNaturalist 2018 (baseline not named; its result tables could not be read), not comparable with "
            "fmnist_lt.",
            "",
            markdown_table(header, rows),
        ]
    )


def summarise(runs_by_arm: dict[str, list[dict[str, Any]]], args: BenchmarkArgs) -> tuple[dict[str, Any], str]:
    arms: dict[str, Any] = {}
    for arm, label in ARMS.items():  # the table's order, not the run order
        runs = runs_by_arm.get(arm, [])
        if runs:
            epochs = "3 (quick)" if args.quick else _recipe(arm).total_epochs
            arms[arm] = {
                "label": label,
                "epochs": epochs,
                "runs": runs,
                "test": summary_by_group(runs, "test"),
                "val": summary_by_group(runs, "val"),
            }
    report = {
        "quick": args.quick,
        "seeds": args.seeds,
        "threads": args.threads,
        "dataset": "fmnist_lt",
        "paper": PAPER_ICCL,
        "recipes": {arm: _recipe(arm).to_dict() for arm in arms},
        "arms": arms,
    }
    return report, _markdown(report)


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return ablation_main(
        "iccl_ablation",
        lambda args: [arm for arm in RUN_ORDER if arm in args.options.arms],
        run_arm,
        summarise,
        argv,
        description=__doc__.splitlines()[0],
        add_flags=_flags,
        quick_help="1 seed, 3 epochs of 2 steps: a plumbing check",
    )


if __name__ == "__main__":
    main()
