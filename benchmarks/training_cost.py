"""Training cost per method relative to CE: step time and peak memory at the recipes' batch (64).

Each fmnist_lt recipe trains one epoch per stage, capped at ``--steps`` steps, in a fresh process
(`ltzoo train ... --steps-per-epoch N`); step time is read from the first (representation) stage's
log line, peak memory is the process's peak RSS (training plus the final evaluation). Ratios to CE
come from the same run of this benchmark.

    .venv/bin/python benchmarks/training_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import ROOT, markdown_table, write_results  # type: ignore[import-not-found]

CE = "ce_resnet32.fmnist_lt"
FLAGSHIP = "dscl_pbsd_resnet32.fmnist_lt"
TARGET_STEP_VS_CE = 3.0
# Runs the CLI in-process and prints the peak RSS at exit: the number belongs to this one run.
RUNNER = (
    "import json, resource, sys; from ltzoo.cli import main; rc = main(sys.argv[1:]); "
    "print('PEAK_RSS_KB=' + str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)); sys.exit(rc)"
)


def measure(name: str, steps: int, threads: int) -> dict[str, Any]:
    import ltzoo

    stages = ltzoo.get_entry(name).recipe().stages
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-c", RUNNER, "train", name, "--out", str(out), "--epochs", str(len(stages)),
               "--steps-per-epoch", str(steps)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: {proc.stderr.strip().splitlines()[-1:]}")
        peak_kb = int(next(l for l in proc.stdout.splitlines() if l.startswith("PEAK_RSS_KB=")).split("=")[1])
        log = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]
    first = log[0]
    batch = stages[0].batch_size
    return {"name": name, "stage": first["stage"], "batch": batch, "images_per_s": first["images_per_s"],
            "step_s": batch / first["images_per_s"], "peak_rss_mb": peak_kb / 1024}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 steps per stage")
    parser.add_argument("--steps", type=int, default=40, help="steps of the timed stage (the first includes the data loader start)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import ltzoo

    steps = 5 if args.quick else args.steps
    rows = [measure(name, steps, args.threads) for name in ltzoo.list_models("*.fmnist_lt")]
    ce = next(r for r in rows if r["name"] == CE)
    for row in rows:
        row["step_vs_ce"] = row["step_s"] / ce["step_s"]
        row["memory_vs_ce"] = row["peak_rss_mb"] / ce["peak_rss_mb"]
    table = markdown_table(
        ["method", "stage timed", "batch", "step (ms)", "step vs CE", "peak RSS (MB)", "memory vs CE"],
        [[r["name"].split(".")[0], r["stage"], r["batch"], f"{1000 * r['step_s']:.0f}", f"{r['step_vs_ce']:.2f}x",
          f"{r['peak_rss_mb']:.0f}", f"{r['memory_vs_ce']:.2f}x"] for r in rows],
    )
    md = (f"## Training cost relative to CE (fmnist_lt recipes, ResNet-32 at 28 px, {steps} steps, "
          f"{args.threads} threads)\n\n{table}\n\nStep time of each recipe's first stage (the representation stage of "
          "two-stage methods; it includes data loading and augmentation); peak RSS of the whole process.")
    flagship = next((r for r in rows if r["name"] == FLAGSHIP), None)
    if flagship is not None:
        verdict = "met" if flagship["step_vs_ce"] <= TARGET_STEP_VS_CE else "NOT met"
        md += (f"\n\nTarget: a DSCL+PBSD step costs at most {TARGET_STEP_VS_CE:.0f}x a CE step; measured "
               f"{flagship['step_vs_ce']:.2f}x -> {verdict}.")
    report = {"quick": args.quick, "steps": steps, "threads": args.threads, "results": rows}
    write_results("training_cost", report, md)
    print(md)
    return report


if __name__ == "__main__":
    main()
