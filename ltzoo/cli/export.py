"""``ltzoo export`` (= ``export/to_onnx.py``) and ``ltzoo trt`` (= ``export/to_tensorrt.py``).

Both parsers are built here once; the scripts in ``export/`` and the ``ltzoo`` sub-commands only call them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltzoo.cli import script_main
from ltzoo.errors import BadHyperParameterError, LtzooError

if TYPE_CHECKING:
    from ltzoo.export.report import ExportReport, Failure, Verification

EXPORT_DESCRIPTION = (
    "Export a model to ONNX (fp32, optionally fp16 and int8 QDQ) with a dynamic batch axis, metadata and "
    "checks: onnx.checker, strict shape inference, I/O, BN folding, TensorRT readiness, ONNX Runtime vs "
    "PyTorch parity, and with --verify dataset a per-split (all/many/medium/few) accuracy gate on val and "
    "test. When installed (pip install 'ltzoo[lint]'), Polygraphy's independent linter checks every graph too; "
    "--int8-debug compares int8 with fp32 tensor by tensor. Any failed check is a non-zero exit; "
    "export_report.json in --out says what failed."
)
TRT_DESCRIPTION = (
    "TensorRT readiness of an exported ONNX file: a static check against TensorRT's ONNX parser support "
    "list (ops, opset, dtypes, int64 ranges, dynamic dims, Q/DQ zero points) and an optimization profile; "
    "then, where the tensorrt package and a CUDA GPU exist, a strongly typed engine build compared with "
    "ONNX Runtime at min/opt/max batch (skipped, and said so, elsewhere). Engines are never written."
)


def _profile(text: str) -> Any:
    from ltzoo.export.options import Profile

    try:
        low, opt, high = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,OPT,MAX batch sizes like 1,8,32, got {text!r}") from None
    try:
        return Profile(low, opt, high)
    except BadHyperParameterError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of ``ltzoo export`` / ``to_onnx.py``, in groups as ``--help`` shows them."""
    from ltzoo.export.options import DEFAULT_EXPORTER, DEFAULT_OPSET, EXPORTERS, SUPPORTED_OPSETS

    parser.add_argument(
        "--model", required=True, help="zoo name, run directory, local-dir:PATH or hf-hub:ORG/REPO[@rev]"
    )
    parser.add_argument("--out", required=True, help="output directory for the .onnx files and export_report.json")
    parser.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        choices=SUPPORTED_OPSETS,
        help=f"ONNX opset (default {DEFAULT_OPSET}; 17-20 parse on every TensorRT 10)",
    )
    parser.add_argument(
        "--exporter",
        choices=EXPORTERS,
        default=DEFAULT_EXPORTER,
        help=f"torch.onnx exporter (default {DEFAULT_EXPORTER}); the report records which one",
    )
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    _add_variant_arguments(parser.add_argument_group("variants (fp16, int8) and graph checks"))
    _add_prior_arguments(parser)
    _add_verify_arguments(parser.add_argument_group("verification (the per-split gate)"))


def _add_variant_arguments(group: argparse._ArgumentGroup) -> None:
    from ltzoo.export.options import (
        CALIBRATION_CHOICES,
        DEFAULT_CALIB_SEED,
        DEFAULT_CALIB_SIZE,
        DEFAULT_CALIBRATION,
        DEFAULT_INT8_DEBUG_WORST,
        DEFAULT_INT8_TARGET,
        INT8_TARGET_NAMES,
    )

    group.add_argument("--fp16", action="store_true", help="also write model_fp16.onnx (fp16 graph, fp32 I/O)")
    group.add_argument(
        "--int8",
        action="store_true",
        help="also write model_int8.onnx (static QDQ, per-channel, class-balanced calibration)",
    )
    group.add_argument(
        "--int8-target",
        choices=INT8_TARGET_NAMES,
        default=DEFAULT_INT8_TARGET,
        help="tensorrt (default): symmetric int8 activations, TensorRT-ready; cpu: uint8 activations "
        "that ONNX Runtime's x86 kernels fuse fully (faster on CPU, not TensorRT-ready)",
    )
    group.add_argument(
        "--calib-size",
        type=int,
        default=DEFAULT_CALIB_SIZE,
        help=f"int8 calibration images from the training split (default {DEFAULT_CALIB_SIZE})",
    )
    group.add_argument(
        "--calib-method",
        choices=CALIBRATION_CHOICES,
        default=DEFAULT_CALIBRATION,
        help=f"int8 calibration method (default {DEFAULT_CALIBRATION}: minmax, then percentile, then "
        "entropy, keeping the first whose val accuracy stays within the int8 gate; test is never used "
        "to choose). percentile and entropy hold every calibration activation in memory: use a small "
        "--calib-size for large models",
    )
    group.add_argument("--calib-seed", type=int, default=DEFAULT_CALIB_SEED, help="seed of the calibration draw")
    group.add_argument(
        "--int8-debug",
        type=int,
        nargs="?",
        const=DEFAULT_INT8_DEBUG_WORST,
        default=None,
        metavar="N",
        help=f"compare int8 with fp32 tensor by tensor on calibration images (ONNX Runtime's "
        f"qdq_loss_debug): the N (default {DEFAULT_INT8_DEBUG_WORST}) worst tensors by SQNR go in the report, and "
        "when int8 fails the gate the nodes that read them are named as --int8-exclude candidates",
    )
    group.add_argument(
        "--int8-exclude",
        action="append",
        default=[],
        metavar="NODE[,NODE...]",
        help="keep these nodes in float in the int8 graph (ORT's nodes_to_exclude; repeatable)",
    )
    group.add_argument(
        "--no-lint",
        dest="lint",
        action="store_false",
        help="skip polygraphy check lint, the independent linter that runs on every graph when "
        "installed (pip install 'ltzoo[lint]')",
    )


def _add_prior_arguments(parser: argparse.ArgumentParser) -> None:
    prior = parser.add_argument_group("deployment prior (one of)").add_mutually_exclusive_group()
    prior.add_argument(
        "--target-prior",
        metavar="uniform|train|FILE",
        help="bake a deployment prior into the graph, as `ltzoo calibrate --method none` does: the "
        "logits become log-posteriors under it (bias-corrected temperature scaling fitted on val); "
        "uniform, train, or a JSON/CSV file of frequency by label name",
    )
    prior.add_argument(
        "--estimate-prior",
        metavar="FOLDER",
        help="bake the prior estimated (EM) from a folder of unlabeled deployment images",
    )
    prior.add_argument(
        "--logit-adjust",
        type=float,
        metavar="TAU",
        help="bake logits - TAU * log(training prior) into the graph (kept for older commands; "
        "`ltzoo calibrate` chooses TAU on val)",
    )


def _add_verify_arguments(group: argparse._ArgumentGroup) -> None:
    from ltzoo.export.options import DEFAULT_MAX_DROP, PROVIDER_CHOICES

    group.add_argument(
        "--verify",
        nargs="?",
        const="dataset",
        default="parity",
        choices=("none", "parity", "dataset"),
        help="none: graph checks only; parity (default): + ORT vs PyTorch at batches 1/3/17; "
        "dataset (also bare --verify): + the per-split accuracy gate on val and test",
    )
    group.add_argument(
        "--max-drop",
        action="append",
        metavar="VARIANT=POINTS",
        help="gate threshold in top-1 points on few-shot and overall, per variant; defaults "
        + ", ".join(f"{k}={v:g}" for k, v in DEFAULT_MAX_DROP.items()),
    )
    group.add_argument("--data-root", help="dataset location (default: $LTZOO_DATA, then the system copy)")
    group.add_argument(
        "--provider",
        choices=PROVIDER_CHOICES,
        default="auto",
        help="ONNX Runtime provider (default auto: TensorRT > CUDA > CPU)",
    )
    group.add_argument(
        "--device",
        default="cpu",
        help="where the PyTorch reference runs for parity and the gate: cpu (default), cuda or cuda:N (fp32, TF32 "
        "off); the graphs themselves run on --provider",
    )
    group.add_argument(
        "--trt-profile",
        type=_profile,
        default=None,
        metavar="MIN,OPT,MAX",
        help="TensorRT optimization profile batch sizes for the report (default 1,8,32)",
    )
    group.add_argument("--batch-size", type=int, default=256, help="evaluation batch size for --verify dataset")
    group.add_argument(
        "--verify-existing",
        action="store_true",
        help="export nothing: re-run every check (and --verify) on the .onnx files already in --out "
        "against --model, e.g. after downloading or editing them",
    )


def options_from_args(args: argparse.Namespace) -> Any:
    from ltzoo.export.options import ExportOptions, Profile
    from ltzoo.export.verify import parse_max_drop

    return ExportOptions(
        opset=args.opset,
        exporter=args.exporter,
        fp16=args.fp16,
        int8=args.int8,
        int8_target=args.int8_target,
        calib_size=args.calib_size,
        calib_method=args.calib_method,
        calib_seed=args.calib_seed,
        int8_debug=args.int8_debug,
        int8_exclude=tuple(name.strip() for group in args.int8_exclude for name in group.split(",") if name.strip()),
        lint=args.lint,
        logit_adjust=args.logit_adjust,
        target_prior=args.target_prior,
        estimate_prior=args.estimate_prior,
        verify=args.verify,
        data_root=args.data_root,
        max_drop=parse_max_drop(args.max_drop),
        provider=None if args.provider == "auto" else args.provider,
        device=args.device,
        trt_profile=args.trt_profile or Profile(),
        batch_size=args.batch_size,
    )


def run_export(args: argparse.Namespace) -> int:
    from ltzoo.preflight import check_data_root, check_device, check_model_source

    # Before ONNX and torch are imported: a bad argument fails in the first second.
    check_model_source(args.model, "--model")
    check_data_root(args.data_root)
    check_device(args.device)
    from ltzoo.export.pipeline import export, recheck

    job = recheck if args.verify_existing else export
    report = job(args.model, args.out, options_from_args(args))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_summary(report)
    return 0


def print_summary(report: ExportReport, printer: Callable[[str], None] = print) -> None:
    """Print what ``make demo`` shows: files, checks and the per-split table."""
    for variant, entry in report.variants.items():
        checks_line = ", ".join(f"{name} {'ok' if check.passed else 'FAILED'}" for name, check in entry.checks.items())
        megabytes = (entry.size_bytes or 0) / 1e6
        printer(f"{variant:5s} {entry.file:18s} {megabytes:8.2f} MB  {checks_line or entry.error or ''}")
    if report.verification.mode == "dataset":
        printer("")
        printer(format_verification(report.verification, report.gate_failures))
    if report.logit_adjust is not None:
        adjust = report.logit_adjust
        what = (
            f"target prior {adjust['target_prior']['kind']}"
            if adjust.get("target_prior")
            else f"logit adjustment tau={adjust['tau']}"
        )
        effect = adjust["effect_points_adjusted_minus_plain"]
        if isinstance(effect, dict):
            effect = "; ".join(
                f"{split} " + ", ".join(f"{g} {v:+.2f}" for g, v in groups.items() if v is not None)
                for split, groups in effect.items()
            )
        printer(f"\n{what}: effect (points, adjusted - plain) {effect}")


def format_verification(verification: Verification, failures: list[Failure]) -> str:
    """The per-split table (PyTorch and each variant, then each variant's delta) as markdown, and the gate's verdict
    (``failures``: the gate's)."""
    from ltzoo.engine.evaluator import format_table
    from ltzoo.export.report import GROUPS
    from ltzoo.export.verify import GATED_GROUPS

    blocks = []
    for split, split_results in verification.results.items():
        rows: dict[str, dict[str, Any]] = {name: scores.to_dict() for name, scores in split_results.items()}
        for variant, variant_deltas in verification.deltas[split].items():
            rows[f"Δ {variant}"] = variant_deltas
        blocks.append(f"{split} (top-1 %, Δ in points)\n" + format_table(rows, GROUPS))
    thresholds = ", ".join(f"{v} {p:g}" for v, p in verification.max_drop.items())
    status = "PASSED" if not failures else "FAILED:\n  " + "\n  ".join(str(failure) for failure in failures)
    blocks.append(f"gate: max drop on {'/'.join(GATED_GROUPS)} (pt): {thresholds} -> {status}")
    return "\n\n".join(blocks)


def add_tensorrt_arguments(parser: argparse.ArgumentParser) -> None:
    from ltzoo.export.options import PROVIDER_CHOICES

    parser.add_argument("--onnx", required=True, help="an ONNX file written by export/to_onnx.py")
    parser.add_argument("--check-only", action="store_true", help="only the static readiness check, no engine build")
    parser.add_argument(
        "--profile",
        type=_profile,
        default=None,
        metavar="MIN,OPT,MAX",
        help="optimization profile batch sizes (default 1,8,32)",
    )
    parser.add_argument(
        "--provider",
        choices=PROVIDER_CHOICES,
        default="auto",
        help="ONNX Runtime provider of the reference run (default auto)",
    )


def run_tensorrt(args: argparse.Namespace) -> int:
    from ltzoo.export.checks import PARITY_TOLERANCES
    from ltzoo.export.metadata import read_metadata
    from ltzoo.export.tensorrt import Profile, build_and_compare, static_check

    path = Path(args.onnx)
    profile = args.profile or Profile()
    result: dict[str, Any] = {}
    failure: LtzooError | None = None
    try:
        result["static"] = static_check(path, profile)
    except LtzooError as error:
        result["static"] = {"passed": False, "reason": str(error), **getattr(error, "details", {})}
        failure = error
    if failure is None and not args.check_only:
        from ltzoo.engine.evaluator import OrtPredictor
        from ltzoo.export.providers import create_session

        variant = read_metadata(path).get("variant", "fp32")
        # TensorRT may run fp32 graphs with TF32 math, so fp32 is compared at the fp16 tolerance.
        tolerance = PARITY_TOLERANCES["int8" if variant == "int8" else "fp16"]
        reference = OrtPredictor(create_session(path, None if args.provider == "auto" else args.provider))
        try:
            result["engine"] = build_and_compare(path, profile, reference, tolerance)
        except LtzooError as error:
            result["engine"] = {"passed": False, "reason": str(error), **getattr(error, "details", {})}
            failure = error
    elif args.check_only:
        result["engine"] = {"skipped": "--check-only"}
    else:
        result["engine"] = {"skipped": "the static check failed"}
    written = _record_tensorrt(path, result)
    static = result["static"]
    print(
        f"static check: {'passed' if static.get('passed') else 'FAILED'}; opset {static.get('opset')}; "
        f"profile {static.get('optimization_profile', {}).get('shapes')}"
    )
    engine = result.get("engine", {})
    print("engine: " + (f"skipped ({engine['skipped']})" if "skipped" in engine else json.dumps(engine)))
    print(f"written to {written}")
    if failure is not None:
        raise failure
    return 0


def _record_tensorrt(path: Path, result: dict[str, Any]) -> Path:
    """Into the export report of ``path``'s directory when it lists the file, else ``<file>.tensorrt.json``."""
    from ltzoo.export.report import read_report, write_report
    from ltzoo.names import REPORT_FILE

    report_path = path.parent / REPORT_FILE
    if report_path.is_file():
        report = read_report(report_path)
        for entry in report.variants.values():
            if entry.file == path.name:
                entry.tensorrt = result
                return write_report(path.parent, report)
    from ltzoo.fileio import atomic_write_json

    side = path.with_name(path.name + ".tensorrt.json")
    atomic_write_json(side, result)
    return side


def main_export(argv: list[str] | None = None) -> int:
    """``python export/to_onnx.py ...``"""
    return script_main(EXPORT_DESCRIPTION, add_export_arguments, run_export, "to_onnx.py", argv)


def main_tensorrt(argv: list[str] | None = None) -> int:
    """``python export/to_tensorrt.py ...``"""
    return script_main(TRT_DESCRIPTION, add_tensorrt_arguments, run_tensorrt, "to_tensorrt.py", argv)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export to ONNX (fp32/fp16/int8) with checks and a per-split gate",
        description=EXPORT_DESCRIPTION,
    )
    add_export_arguments(p)
    p.set_defaults(func=run_export)
    t = subparsers.add_parser(
        "trt", help="TensorRT readiness check (and engine build where a GPU exists)", description=TRT_DESCRIPTION
    )
    add_tensorrt_arguments(t)
    t.set_defaults(func=run_tensorrt)
