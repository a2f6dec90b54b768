"""Command-line latency: how long ``ltzoo --help``, ``ltzoo list`` and ``ltzoo info NAME`` take before they
answer, against ``python -c "import torch"`` timed in the same run (absolute times drift on a shared machine;
the ratio does not). Each command runs in a fresh interpreter, alternating with the torch baseline, and
every command also reports which heavy modules (torch, timm, huggingface_hub, onnx) it imported.

Target (issue 31): ``ltzoo --help`` under 25 % of ``import torch``.

    .venv/bin/python -m benchmarks.cli_latency [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import markdown_table, write_results

TARGET_RATIO = 0.25
HEAVY = ("torch", "timm", "huggingface_hub", "onnx", "onnxruntime")
BASELINE = "import torch"
COMMANDS = {
    "ltzoo --help": ["--help"],
    "ltzoo list": ["list"],
    "ltzoo info ce_resnet32.fmnist_lt": ["info", "ce_resnet32.fmnist_lt"],
}
# Runs the ltzoo command line in this interpreter, then names the heavy modules it imported (on stderr).
_PROBE = (
    "import sys, contextlib, io\n"
    "from ltzoo.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    try:\n"
    "        main(sys.argv[1:])\n"
    "    except SystemExit:\n"
    "        pass\n"
    f"print(','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
)


def wall_time(command: list[str]) -> tuple[float, str]:
    """Seconds from start to exit of ``command``, and what it printed on stderr."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stderr.strip()


def measure(repeats: int) -> dict[str, Any]:
    baseline_times: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    imported: dict[str, str] = {}
    for _ in range(repeats):  # interleaved, so a busy spell of the machine hits every command alike
        baseline_times.append(wall_time([sys.executable, "-c", BASELINE])[0])
        for name, argv in COMMANDS.items():
            seconds, heavy = wall_time([sys.executable, "-c", _PROBE, *argv])
            times[name].append(seconds)
            imported[name] = heavy
    baseline = statistics.median(baseline_times)
    rows = [
        {
            "command": name,
            "median_s": statistics.median(values),
            "ratio_to_import_torch": statistics.median(values) / baseline,
            "heavy_modules_imported": imported[name].split(",") if imported[name] else [],
        }
        for name, values in times.items()
    ]
    return {"repeats": repeats, "import_torch_median_s": baseline, "rows": rows}


def render(report: dict[str, Any]) -> str:
    help_row = next(r for r in report["rows"] if r["command"] == "ltzoo --help")
    verdict = "met" if help_row["ratio_to_import_torch"] < TARGET_RATIO else "NOT met"
    table = markdown_table(
        ["command", "median (s)", "vs `import torch`", "heavy modules imported"],
        [[f'`python -c "{BASELINE}"`', f"{report['import_torch_median_s']:.3f}", "1.00x", "torch"]]
        + [
            [
                f"`{r['command']}`",
                f"{r['median_s']:.3f}",
                f"{r['ratio_to_import_torch']:.2f}x",
                ", ".join(r["heavy_modules_imported"]) or "none",
            ]
            for r in report["rows"]
        ],
    )
    return (
        "## Command-line latency: time to answer vs `import torch`\n\n"
        f"{table}\n\nMedian of {report['repeats']} fresh interpreters per command, interleaved with the baseline in "
        f"one run. Target: `ltzoo --help` under {TARGET_RATIO:.0%} of `import torch` -> **{verdict}** "
        f"({help_row['ratio_to_import_torch']:.1%}).\n"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 9")
    args = parser.parse_args(argv)
    report = {"quick": args.quick, **measure(3 if args.quick else 9)}
    markdown = render(report)
    write_results("cli_latency", report, markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
