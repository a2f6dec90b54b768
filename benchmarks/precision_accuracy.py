"""Does bf16 training change accuracy? CE and DSCL + PBSD on fmnist_lt, fp32 against bf16, over seeds.

``--precision auto`` trains in bf16 on hardware with native bf16 and in fp32 elsewhere. Where this runs
on a CPU without native bf16, auto *is* fp32, so the comparison that matters is fp32 against explicit
bf16 (emulated here: slower, but the same rounding as native bf16 autocast). The reported numbers are
fp32 evaluations of the saved weights in both cases. The verdict per recipe: the difference of the
means lies within the seed spread (the larger sample std of the two) on all/many/medium/few, or not;
where not, ``auto`` must not use bf16 for that recipe.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/precision_accuracy.py [--epochs 30] [--seeds 0 1 2]

Writes ``benchmarks/results/precision_accuracy.{json,md}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from common import GROUPS, WORK_DIR, fmt_mean_std, markdown_table, mean_std, run_jobs, run_record, train_seeded, write_results  # type: ignore[import-not-found]

RECIPES = ("ce_resnet32.fmnist_lt", "dscl_pbsd_resnet32.fmnist_lt")
PRECISIONS = ("fp32", "bf16")


def run_one(name: str, precision: str, seed: int, work_dir: Path, epochs: int | None, threads: int,
            quick: bool) -> dict[str, Any]:
    import torch

    from ltzoo.registry import get_entry

    torch.set_num_threads(threads)
    limits: dict[str, Any] = {"epochs": 2, "steps_per_epoch": 2} if quick else ({"epochs": epochs} if epochs else {})
    metrics = train_seeded(f"{name.split('.')[0]}_{precision}.fmnist_lt", seed, work_dir, recipe=get_entry(name).recipe(),
                           precision=precision, **limits)
    return run_record(metrics, recipe=name, precision=metrics.get("precision", precision), seed=seed)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="total budget (default: the recipes' own)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    seeds = args.seeds[:1] if args.quick else args.seeds
    work_dir = args.work_dir or WORK_DIR / ("precision_accuracy_quick" if args.quick else "precision_accuracy")
    jobs = [(name, precision, seed, work_dir, args.epochs, args.threads, args.quick)
            for seed in seeds for name in args.recipes for precision in PRECISIONS]
    runs = run_jobs(run_one, jobs, args.jobs)
    rows, verdicts = [], {}
    for name in args.recipes:
        cells = {p: [r for r in runs if r["recipe"] == name and r["precision"] == p] for p in PRECISIONS}
        for precision in PRECISIONS:
            rows.append([name.split(".")[0], precision, *[fmt_mean_std(r["test"][g] for r in cells[precision]) for g in GROUPS],
                         fmt_mean_std(r["val"]["all"] for r in cells[precision])])
        within = {}
        for group in GROUPS:
            (m32, s32), (m16, s16) = (mean_std(r["test"][group] for r in cells[p]) for p in PRECISIONS)
            within[group] = {"difference": m16 - m32, "spread": max(s32 or 0.0, s16 or 0.0),
                             "within": abs(m16 - m32) <= max(s32 or 0.0, s16 or 0.0)}
        verdicts[name] = within
    lines = ["## bf16 against fp32 training (fmnist_lt; evaluated in fp32)" + (" (quick: not a result)" if args.quick else ""),
             "", f"{len(seeds)} seed(s) {seeds}; test top-1 (%) as mean ± sample std.", "",
             markdown_table(["recipe", "precision", *[f"test {g}" for g in GROUPS], "val all"], rows), ""]
    for name, within in verdicts.items():
        ok = all(v["within"] for v in within.values())
        lines.append(f"- {name}: bf16 − fp32 = " + ", ".join(f"{g} {v['difference']:+.2f} (spread {v['spread']:.2f})"
                                                             for g, v in within.items())
                     + f" -> {'within the seed spread: auto may use bf16' if ok else 'OUTSIDE the seed spread'}.")
    report = {"quick": args.quick, "seeds": seeds, "epochs": args.epochs, "runs": runs, "verdicts": verdicts}
    write_results("precision_accuracy", report, "\n".join(lines))
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
