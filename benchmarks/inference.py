"""Inference speed: PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime int8 (QDQ), same run, same inputs.

ResNet-50 at 224 px (1000 classes) and ResNet-32 at 28 px (fmnist_lt), batch 1 and 32: latency p50/p95
and throughput (images/s at the p50 latency). Graphs come from ``ltzoo.export`` (the default dynamo
exporter, int8 = static QDQ per-channel), random-init weights: speed does not depend on the weights,
and accuracy is the export gate's job, not this benchmark's. Both int8 flavours are timed:
``ort_int8`` is ``--int8-target cpu`` (uint8 activations, what ORT's x86 kernels fuse) and
``ort_int8_trt`` is the default ``--int8-target tensorrt`` graph (symmetric int8, TensorRT-ready),
which ORT on CPU runs only partly fused. The backends are timed in interleaved rounds so that load
drift on a shared machine hits them alike; the ratios are the result.

    .venv/bin/python -m benchmarks.inference [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import markdown_table, write_results

CASES = [("resnet50", 3, 224, 1000), ("resnet32", 1, 28, 10)]
BATCHES = (1, 32)
BACKENDS = ("pytorch_eager", "ort_fp32", "ort_int8", "ort_int8_trt")
BACKEND_PRECISION = {"pytorch_eager": "fp32", "ort_fp32": "fp32", "ort_int8": "int8", "ort_int8_trt": "int8"}
# Targets of the export issue, for ResNet-50: ORT fp32 >= 1.5x eager, int8 >= 1.8x ORT fp32.
TARGETS = {"ort_fp32_vs_eager": 1.5, "ort_int8_vs_ort_fp32": 1.8}


def build_backends(
    arch: str, in_chans: int, size: int, num_classes: int, work: Path, calib_images: int, threads: int | None = None
) -> dict[str, Any]:
    """Predictors (float32 NCHW batch -> logits) for the backends of one model."""
    import onnxruntime as ort
    import torch

    from ltzoo.export.int8 import quantize_int8
    from ltzoo.export.onnx_export import export_onnx
    from ltzoo.export.providers import select_providers
    from ltzoo.models import build_model

    torch.manual_seed(0)
    model = build_model(arch, num_classes, in_chans=in_chans).eval()
    fp32 = work / f"{arch}.onnx"
    export_onnx(model, fp32, (in_chans, size, size))
    paths = {"ort_fp32": fp32}
    for name, target in (("ort_int8", "cpu"), ("ort_int8_trt", "tensorrt")):
        rng = np.random.default_rng(0)
        calibration = (
            rng.standard_normal((min(8, calib_images), in_chans, size, size), dtype=np.float32)
            for _ in range(max(1, calib_images // 8))
        )
        paths[name] = work / f"{arch}_{name}.onnx"
        quantize_int8(fp32, paths[name], calibration, method="minmax", target=target)
    # Default session options (what a user gets) unless --threads pins both runtimes; best provider.
    # Except spinning: ORT's idle intra-op threads spin-wait after each run, and in interleaved rounds
    # they would steal the cores from the PyTorch call that follows (eager timings several times too
    # slow on 2 cores). Without spinning ORT is, if anything, a little slower: the ratios are conservative.
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    sessions = {
        name: ort.InferenceSession(str(path), options, providers=select_providers()) for name, path in paths.items()
    }

    def eager(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).numpy()

    def session_runner(session: Any):
        return lambda batch: session.run(["logits"], {"input": batch})[0]

    return {"pytorch_eager": eager, **{name: session_runner(s) for name, s in sessions.items()}}


def time_backends(
    backends: dict[str, Any], batch: np.ndarray, rounds: int, per_round: int, warmup: int
) -> dict[str, list[float]]:
    """Latencies (s) per backend, timed in interleaved rounds after ``warmup`` untimed calls each."""
    for run in backends.values():
        for _ in range(warmup):
            run(batch)
    latencies: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(rounds):
        for name, run in backends.items():
            for _ in range(per_round):
                start = time.perf_counter()
                run(batch)
                latencies[name].append(time.perf_counter() - start)
    return latencies


def summarise(latencies: list[float], batch: int) -> dict[str, Any]:
    values = np.asarray(latencies)
    p50 = float(np.percentile(values, 50))
    return {
        "p50_ms": 1e3 * p50,
        "p95_ms": 1e3 * float(np.percentile(values, 95)),
        "images_per_s": batch / p50,
        "iterations": int(values.size),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations (CI smoke run); ratios are noisy")
    parser.add_argument(
        "--threads",
        type=int,
        help="intra-op threads for PyTorch and ORT alike (default: each "
        "library's own; 1 keeps OpenMP barriers out of the picture on a shared, busy machine)",
    )
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    # (rounds, iterations per round, warmup) per batch size.
    plan = {1: (2, 2, 1), 32: (1, 1, 1)} if args.quick else {1: (5, 10, 3), 32: (4, 2, 1)}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch, in_chans, size, num_classes in CASES:
            print(f"{arch} at {size}px: exporting fp32 and int8", flush=True)
            calib_images = 8 if args.quick else 32
            backends = build_backends(arch, in_chans, size, num_classes, Path(tmp), calib_images, args.threads)
            for batch_size in BATCHES:
                rounds, per_round, warmup = plan[batch_size]
                batch = np.random.default_rng(1).standard_normal((batch_size, in_chans, size, size), dtype=np.float32)
                latencies = time_backends(backends, batch, rounds, per_round, warmup)
                row = {
                    "arch": arch,
                    "input": [in_chans, size, size],
                    "batch": batch_size,
                    **{name: summarise(values, batch_size) for name, values in latencies.items()},
                }
                row["ort_fp32_vs_eager"] = row["pytorch_eager"]["p50_ms"] / row["ort_fp32"]["p50_ms"]
                row["ort_int8_vs_ort_fp32"] = row["ort_fp32"]["p50_ms"] / row["ort_int8"]["p50_ms"]
                row["ort_int8_vs_eager"] = row["pytorch_eager"]["p50_ms"] / row["ort_int8"]["p50_ms"]
                row["ort_int8_trt_vs_ort_fp32"] = row["ort_fp32"]["p50_ms"] / row["ort_int8_trt"]["p50_ms"]
                results.append(row)
                print(
                    f"  batch {batch_size}: "
                    + ", ".join(f"{n} p50 {row[n]['p50_ms']:.1f} ms" for n in BACKENDS)
                    + f"; ORT fp32 {row['ort_fp32_vs_eager']:.2f}x eager, "
                    + f"int8 {row['ort_int8_vs_ort_fp32']:.2f}x fp32",
                    flush=True,
                )

    resnet50 = [r for r in results if r["arch"] == "resnet50"]
    targets = {
        key: {
            "target": target,
            "measured": {f"batch {r['batch']}": r[key] for r in resnet50},
            "met": all(r[key] >= target for r in resnet50),
        }
        for key, target in TARGETS.items()
    }
    import onnxruntime

    report = {
        "quick": args.quick,
        "mode": "quick" if args.quick else "full",
        "onnxruntime": onnxruntime.__version__,
        "torch_threads": torch.get_num_threads(),
        "threads_option": args.threads,
        "results": results,
        "targets_resnet50": targets,
    }
    from benchmarks.cpu_peak import describe_peaks, measured_peaks, model_gflops, over_peak_note, peak_for
    from ltzoo.models import build_model

    peaks = measured_peaks(args.threads or torch.get_num_threads())
    gflops = {
        arch: model_gflops(build_model(arch, classes, in_chans=chans), (chans, size, size))
        for arch, chans, size, classes in CASES
    }
    report["peaks"] = {**peaks, "model_gflops_per_image": gflops}
    for r in results:
        for name in BACKENDS:
            r[name]["fraction_of_peak"] = (
                r[name]["images_per_s"] * gflops[r["arch"]] / peak_for(peaks, BACKEND_PRECISION[name])
            )
    header = ["model", "input", "batch", "backend", "p50 (ms)", "p95 (ms)", "images/s", "% of peak", "speed-up"]
    rows = []
    for r in results:
        for name in BACKENDS:
            speedup = {
                "pytorch_eager": "1.00x (reference)",
                "ort_fp32": f"{r['ort_fp32_vs_eager']:.2f}x eager",
                "ort_int8": f"{r['ort_int8_vs_ort_fp32']:.2f}x ORT fp32 ({r['ort_int8_vs_eager']:.2f}x eager)",
                "ort_int8_trt": f"{r['ort_int8_trt_vs_ort_fp32']:.2f}x ORT fp32 (TensorRT-ready graph)",
            }[name]
            s = r[name]
            rows.append(
                [
                    r["arch"],
                    "x".join(map(str, r["input"])),
                    r["batch"],
                    name,
                    f"{s['p50_ms']:.2f}",
                    f"{s['p95_ms']:.2f}",
                    f"{s['images_per_s']:.1f}",
                    f"{100 * s['fraction_of_peak']:.1f}",
                    speedup,
                ]
            )
    title = "## Inference: PyTorch eager vs ONNX Runtime fp32 vs int8 (QDQ)"
    if args.threads:
        title += f", {args.threads} thread{'s' if args.threads > 1 else ''} each"
    lines = [title, "", markdown_table(header, rows), ""]
    for key, entry in targets.items():
        measured = ", ".join(f"{k}: {v:.2f}x" for k, v in entry["measured"].items())
        lines.append(
            f"- ResNet-50 {key.replace('_', ' ')}: target >= {entry['target']}x; measured {measured} "
            f"-> {'met' if entry['met'] else 'NOT met'}"
        )
    lines.append(
        "- ort_int8 = `--int8-target cpu` (uint8 activations); ort_int8_trt = the default "
        "`--int8-target tensorrt` graph (symmetric int8), measured here on ORT CPU, where it is only "
        "partly fused."
    )
    lines.append(
        f"- % of peak = images/s x model GFLOPs ({', '.join(f'{a} {g:.3f}' for a, g in gflops.items())} per "
        "image, 2 x conv/linear MACs) / the measured peak of the backend's arithmetic (fp32 for eager and "
        "ORT fp32, int8 for the int8 graphs). " + describe_peaks(peaks)
    )
    note = over_peak_note([r[name]["fraction_of_peak"] for r in results for name in BACKENDS])
    if note:
        lines.append(f"- {note}")
    lines.append(f"\n_{report['mode']} mode; the backends are timed in interleaved rounds in one process._")
    write_results("inference" if not args.threads else f"inference_threads{args.threads}", report, "\n".join(lines))
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
