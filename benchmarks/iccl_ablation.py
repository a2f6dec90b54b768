"""ICCL ablation on fmnist_lt: CE; ICCL without interpolation; ICCL without stage 2; full ICCL.

Each arm is trained with the real trainer for every seed (3 by default) at the recipes' fmnist_lt
budget (CE's 30 epochs for CE and full ICCL; "no stage 2" drops ICCL's 5 classifier epochs),
model selection on val, then all / many / medium / few top-1 on the test split are reported as
mean +- sample standard deviation over seeds. Writes ``benchmarks/results/iccl_ablation.json`` and
``.md`` (``--quick``: 1 seed, 3 epochs of 2 steps, written to ``iccl_ablation_quick.*``).

Run directories go under ``--work-dir`` (default ``runs/iccl_ablation``); a finished run is reused and an
interrupted one resumed, so re-running the command continues where it stopped.

    nice -n 10 .venv/bin/python benchmarks/iccl_ablation.py            # full: 4 arms x 3 seeds
    .venv/bin/python benchmarks/iccl_ablation.py --quick               # plumbing check, minutes
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ltzoo.engine.trainer import train
from ltzoo.recipes.base import Recipe
from ltzoo.recipes.iccl import iccl_fmnist_lt, iccl_variant
from ltzoo.registry import get_entry
from ltzoo.runs import atomic_write_bytes, atomic_write_json

RESULTS_DIR = Path(__file__).resolve().parent / "results"
GROUPS = ("all", "many", "medium", "few")

ARMS: dict[str, tuple[str, Callable[[], Recipe]]] = {
    "ce": ("CE (instance sampling)", lambda: get_entry("ce_resnet32.fmnist_lt").recipe()),
    "iccl_no_interpolation": ("ICCL without interpolation",
                              lambda: iccl_variant(iccl_fmnist_lt(), interpolation=False)),
    "iccl_no_stage2": ("ICCL without stage 2", lambda: iccl_variant(iccl_fmnist_lt(), stage2=False)),
    "iccl": ("ICCL (full)", iccl_fmnist_lt),
}

RUN_ORDER = ("iccl_no_stage2", "iccl", "iccl_no_interpolation", "ce")


def run_arm(arm: str, seed: int, work_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Train (or reuse / resume) one arm at one seed; return its val and test group accuracies."""
    out = work_dir / f"{arm}_seed{seed}"
    metrics_file = out / "metrics.json"
    if not metrics_file.is_file():
        resume = (out / "checkpoints" / "last.pt").is_file()
        print(f"[iccl_ablation] {'resuming' if resume else 'training'} {arm} seed {seed} -> {out}", flush=True)
        train(ARMS[arm][1](), out, seed=seed, resume=resume, **options)
    metrics = json.loads(metrics_file.read_text())
    return {
        "seed": seed,
        "run_dir": str(out),
        "selected": metrics["selected"],
        "train_time_s": metrics["train_time_s"],
        "val": {g: metrics["val"][g] for g in GROUPS},
        "test": {g: metrics["test"][g] for g in GROUPS},
    }


def summarise(runs: list[dict[str, Any]], split: str) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (n - 1; 0 for a single seed) per shot group."""
    out = {}
    for group in GROUPS:
        values = [r[split][group] for r in runs]
        out[group] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def markdown(report: dict[str, Any]) -> str:
    seeds = report["config"]["seeds"]
    lines = [
        "# ICCL ablation on fmnist_lt",
        "",
        f"Top-1 (%) on the balanced test split, mean ± sample std over seeds {seeds}; model selection on val. "
        f"Command: `{report['config']['command']}`.",
        "",
        "| arm | all | many | medium | few | val all | train time (s/run) |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, result in report["arms"].items():
        test, val = result["test"], result["val"]
        cells = [f"{test[g]['mean']:.2f} ± {test[g]['std']:.2f}" for g in GROUPS]
        mean_time = statistics.fmean(r["train_time_s"] for r in result["runs"])
        lines.append(f"| {result['label']} | {' | '.join(cells)} | {val['all']['mean']:.2f} ± {val['all']['std']:.2f} "
                     f"| {mean_time:.0f} |")
    lines += ["", "Every ICCL hyper-parameter is ltzoo's choice (see `ltzoo/recipes/iccl.py`); shot groups: "
              f"{report['config']['shots']}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 3 epochs of 2 steps: a plumbing check")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (quick: 0)")
    parser.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=list(ARMS))
    parser.add_argument("--work-dir", type=Path, default=None, help="run directories (default runs/iccl_ablation)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's); 1 helps on an oversubscribed machine")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    options: dict[str, Any] = {"epochs": 3, "steps_per_epoch": 2} if args.quick else {}
    stem = "iccl_ablation_quick" if args.quick else "iccl_ablation"
    work_dir = args.work_dir or Path("runs") / stem
    started = time.time()
    # Seed-major, and the arm that logs val every epoch first: an early, partial run is already informative.
    order = [arm for arm in RUN_ORDER if arm in args.arms]
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in order}
    for seed in seeds:
        for arm in order:
            runs[arm].append(run_arm(arm, seed, work_dir, options))
    arms = {}
    for arm in ARMS:
        if arm in runs:
            arms[arm] = {"label": ARMS[arm][0], "recipe": ARMS[arm][1]().to_dict(), "runs": runs[arm],
                         "test": summarise(runs[arm], "test"), "val": summarise(runs[arm], "val")}
    from ltzoo.data import build_dataset

    report = {
        "benchmark": "iccl_ablation",
        "dataset": "fmnist_lt",
        "config": {
            "seeds": seeds,
            "quick": args.quick,
            "trainer_options": options,
            "command": " ".join(["python", "benchmarks/iccl_ablation.py",
                                 *(argv if argv is not None else sys.argv[1:])]),
            "shots": build_dataset("fmnist_lt").shots.to_dict(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
            "wall_time_s": time.time() - started,
        },
        "arms": arms,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.results_dir / f"{stem}.json", report)
    atomic_write_bytes(args.results_dir / f"{stem}.md", markdown(report).encode())
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
