"""Training throughput on this CPU: forward + backward + SGD step at batch 64.

ResNet-32 at 28 px (the fmnist_lt recipes) and ResNet-50 at 224 px (the paper-scale recipes):
images/s and peak RSS of the process.

    .venv/bin/python -m benchmarks.train_throughput [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from typing import Any

from benchmarks.common import markdown_table, write_results

CASES = [("resnet32", 1, 28, 10), ("resnet50", 3, 224, 1000)]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(
    arch: str, in_chans: int, size: int, num_classes: int, batch: int, steps: int, warmup: int
) -> dict[str, Any]:
    import torch

    from ltzoo.models import build_model

    torch.manual_seed(0)
    model = build_model(arch, num_classes, in_chans=in_chans).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch, in_chans, size, size)
    targets = torch.randint(0, num_classes, (batch,))
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    step_s = sorted(times)[len(times) // 2]
    return {
        "arch": arch,
        "input": [in_chans, size, size],
        "batch": batch,
        "steps": steps,
        "median_step_s": step_s,
        "images_per_s": batch / step_s,
        "peak_rss_mb": peak_rss_mb(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps (CI smoke run)")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    steps, warmup = (2, 1) if args.quick else (10, 2)
    # One fresh process per case, so each peak RSS belongs to that model alone.
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for case in CASES:
        with ctx.Pool(1) as pool:
            rows.append(pool.apply(measure, case, {"batch": args.batch, "steps": steps, "warmup": warmup}))
    table = markdown_table(
        ["model", "input", "batch", "images/s", "median step (s)", "peak RSS (MB)"],
        [
            [
                r["arch"],
                "x".join(map(str, r["input"])),
                r["batch"],
                f"{r['images_per_s']:.1f}",
                f"{r['median_step_s']:.3f}",
                f"{r['peak_rss_mb']:.0f}",
            ]
            for r in rows
        ],
    )
    report = {"quick": args.quick, "results": rows}
    write_results("train_throughput", report, "## Training throughput (forward+backward+step)\n\n" + table)
    print(table)
    return report


if __name__ == "__main__":
    main()
