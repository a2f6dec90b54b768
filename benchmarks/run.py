"""Run the benchmarks and render ``benchmarks/REPORT.md`` from ``benchmarks/results/*.md``. From the
repository root:

    .venv/bin/python -m benchmarks.run            # full mode: the numbers of the real report
    .venv/bin/python -m benchmarks.run --quick    # smoke mode (minutes), e.g. in CI
    .venv/bin/python -m benchmarks.run --only train_throughput inference

Every module ``benchmarks.<name>`` with a ``main(argv)`` that accepts ``--quick`` is a benchmark, and runs
alone the same way (``python -m benchmarks.<name> --help``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"common", "run", "__init__", "report", "cpu_peak"}


# Benchmarks that read what others write, and whose results they read: they run after those. Everything else
# runs in name order before them.
READS = {
    "claims": ("accuracy", "dscl_ablation", "wb_benchmark", "synergy_ablation", "iccl_ablation"),
    "calibration": ("accuracy",),
    "shifted_priors": ("accuracy",),
    "export_fidelity": ("accuracy", "calibration"),
    "feature_probes": ("accuracy",),
    "select": ("accuracy", "calibration"),  # the pick is judged against every row, calibrated rows included
}


def discover() -> list[str]:
    """Every benchmark, each after the ones whose results (or runs) it reads."""
    names = sorted(p.stem for p in HERE.glob("*.py") if p.stem not in NOT_BENCHMARKS)
    ordered: list[str] = []

    def place(name: str) -> None:
        if name not in ordered:
            for before in READS.get(name, ()):
                place(before)
            ordered.append(name)

    for name in names:
        place(name)
    return ordered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: tiny budgets, minutes not hours")
    parser.add_argument("--only", nargs="*", help=f"benchmarks to run (default: all of {discover()})")
    args = parser.parse_args(argv)
    names = args.only or discover()
    failures = []
    for name in names:
        print(f"\n##### {name} {'(quick)' if args.quick else ''}", flush=True)
        started = time.time()
        module = importlib.import_module(f"benchmarks.{name}")
        try:
            module.main(["--quick"] if args.quick else [])
        except Exception as exc:  # keep going: one broken benchmark must not hide the others' numbers
            failures.append(name)
            print(f"benchmark {name} failed: {exc!r}", file=sys.stderr)
        print(f"##### {name}: {time.time() - started:.0f} s", flush=True)
    from benchmarks.report import render

    path = render(quick=args.quick)
    print(f"\nreport written to {path}")
    if failures:
        print(f"failed: {failures}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
