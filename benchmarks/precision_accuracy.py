"""Does bf16 training change accuracy? CE and DSCL + PBSD on fmnist_lt, fp32 against bf16, over seeds.

``--precision auto`` trains in bf16 on hardware with native bf16 and in fp32 elsewhere. Where this runs
on a CPU without native bf16, auto *is* fp32, so the comparison that matters is fp32 against explicit
bf16 (emulated here: slower, but the same rounding as native bf16 autocast). The reported numbers are
fp32 evaluations of the saved weights in both cases. The verdict per recipe: the difference of the
means lies within the seed spread (the larger sample std of the two) on all/many/medium/few, or not;
where not, ``auto`` must not use bf16 for that recipe.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.precision_accuracy [--epochs 30] [--seeds 0 1 2]

Writes ``benchmarks/results/precision_accuracy.{json,md}``.
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
    mean_std,
    run_record,
    train_seeded,
)

RECIPES = ("ce_resnet32.fmnist_lt", "dscl_pbsd_resnet32.fmnist_lt")
PRECISIONS = ("fp32", "bf16")


def run_one(cell: tuple[str, str], seed: int, args: BenchmarkArgs) -> dict[str, Any]:
    """One seed of ``cell`` = (zoo name, precision)."""
    from ltzoo.registry import get_entry

    name, precision = cell
    epochs = args.options.epochs
    limits: dict[str, Any] = (
        {"epochs": 2, "steps_per_epoch": 2} if args.quick else ({"epochs": epochs} if epochs else {})
    )
    metrics = train_seeded(
        f"{name.split('.')[0]}_{precision}.fmnist_lt",
        seed,
        args.work_dir,
        recipe=get_entry(name).recipe(),
        precision=precision,
        **limits,
    )
    return run_record(metrics, recipe=name, precision=metrics.get("precision", precision), seed=seed)


def summarise(
    runs_by_cell: dict[tuple[str, str], list[dict[str, Any]]], args: BenchmarkArgs
) -> tuple[dict[str, Any], str]:
    # Seed-major, the order they were trained in.
    runs = [cell_runs[index] for index in range(len(args.seeds)) for cell_runs in runs_by_cell.values()]
    rows, verdicts = [], {}
    for name in args.options.recipes:
        cells = {p: [r for r in runs if r["recipe"] == name and r["precision"] == p] for p in PRECISIONS}
        for precision in PRECISIONS:
            rows.append(
                [
                    name.split(".")[0],
                    precision,
                    *[fmt_mean_std(r["test"][g] for r in cells[precision]) for g in GROUPS],
                    fmt_mean_std(r["val"]["all"] for r in cells[precision]),
                ]
            )
        within = {}
        for group in GROUPS:
            (m32, s32), (m16, s16) = (mean_std(r["test"][group] for r in cells[p]) for p in PRECISIONS)
            within[group] = {
                "difference": m16 - m32,
                "spread": max(s32 or 0.0, s16 or 0.0),
                "within": abs(m16 - m32) <= max(s32 or 0.0, s16 or 0.0),
            }
        verdicts[name] = within
    lines = [
        "## bf16 against fp32 training (fmnist_lt; evaluated in fp32)"
        + (" (quick: not a result)" if args.quick else ""),
        "",
        f"{len(args.seeds)} seed(s) {args.seeds}; test top-1 (%) as mean ± sample std.",
        "",
        markdown_table(["recipe", "precision", *[f"test {g}" for g in GROUPS], "val all"], rows),
        "",
    ]
    for name, within in verdicts.items():
        ok = all(v["within"] for v in within.values())
        lines.append(
            f"- {name}: bf16 − fp32 = "
            + ", ".join(f"{g} {v['difference']:+.2f} (spread {v['spread']:.2f})" for g, v in within.items())
            + f" -> {'within the seed spread: auto may use bf16' if ok else 'OUTSIDE the seed spread'}."
        )
    report = {
        "quick": args.quick,
        "seeds": args.seeds,
        "epochs": args.options.epochs,
        "runs": runs,
        "verdicts": verdicts,
    }
    return report, "\n".join(lines)


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=None, help="total budget (default: the recipes' own)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return ablation_main(
        "precision_accuracy",
        lambda args: [(name, precision) for name in args.options.recipes for precision in PRECISIONS],
        run_one,
        summarise,
        argv,
        description=__doc__.splitlines()[0],
        add_flags=_flags,
    )


if __name__ == "__main__":
    main()
