"""The export job: model -> fp32 ONNX (+ fp16, int8) -> checks -> per-split gate -> ``export_report.json``.

Two entry points share the checks: :func:`export` makes the graphs, :func:`recheck` re-runs every check
on graphs already in a folder (downloaded or edited). Every check of every variant is recorded in the
report (:class:`~ltzoo.export.report.ExportReport`); the report is written even when something fails,
and then :class:`~ltzoo.errors.ExportCheckError` is raised listing every failure, so a broken export is
a non-zero exit with a readable reason, never a warning next to a saved file.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ltzoo.errors import ExportCheckError, LtzooError
from ltzoo.export import checks, lint, tensorrt
from ltzoo.export.calibration import SELECTION_SPLIT, choose_calibration
from ltzoo.export.fp16 import convert_fp16
from ltzoo.export.int8 import CALIBRATION_BATCH, class_balanced_indices, quantize_int8
from ltzoo.export.int8_debug import DEBUG_CHUNK, DEBUG_IMAGES, int8_debug
from ltzoo.export.logit_adjust import LogitAdjusted
from ltzoo.export.metadata import (
    ModelInfo,
    build_metadata,
    decode_metadata,
    library_versions,
    load_onnx,
    model_info_from_config,
    read_metadata,
    write_metadata_props,
)
from ltzoo.export.onnx_export import EXPORT_BATCH, export_onnx, save_model
from ltzoo.export.options import AUTO_CALIBRATION, DEFAULT_INT8_TARGET, ExportOptions
from ltzoo.export.providers import create_session
from ltzoo.export.report import (
    MAKE_CHECK,
    REFERENCE,
    CheckResult,
    ExportReport,
    Failure,
    Scores,
    VariantReport,
    Verification,
    read_report,
    write_report,
)
from ltzoo.export.verify import GATED_GROUPS, evaluate_predictors, gate
from ltzoo.fileio import sha256_file
from ltzoo.names import REPORT_FILE, VARIANT_FILES
from ltzoo.portable import portable_dataset, portable_model_source
from ltzoo.preflight import check_out_dir
from ltzoo.runs import TrainedOn

log = logging.getLogger("ltzoo.export")

PARITY_POOL_SIZE = 64
UNADJUSTED = "pytorch (no logit adjustment)"


@contextlib.contextmanager
def output_folder(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Create ``out_dir``, proven writable before any slow work starts (:func:`ltzoo.preflight.check_out_dir`).
    If the job then fails before it wrote anything there, the folders this call created are removed again;
    a report that says what failed stays."""
    path = Path(out_dir).expanduser()
    missing = [p for p in (path, *path.parents) if not p.exists()]
    check_out_dir(path)
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        for created in missing:  # innermost first; rmdir removes only empty folders
            try:
                created.rmdir()
            except OSError:
                break
        raise


def load_source(source: str) -> tuple[nn.Module, ModelInfo, dict[str, Any]]:
    """The eval-mode model, its :class:`ModelInfo` and its config for anything ``ltzoo.load`` accepts."""
    from ltzoo.loading import load

    model, config = load(source, with_config=True)
    if not config:
        raise LtzooError(f"{source!r} gave a model without a config; export needs a trained run or a published model")
    return model, model_info_from_config(config, str(source)), config


@dataclass
class _Subject:
    """The model the graphs are checked against, and what every check of every variant shares."""

    model: nn.Module  # as loaded
    info: ModelInfo
    spec: str  # the source, as given
    tau: float | None  # the logit adjustment baked into the graphs
    reference: nn.Module  # what the graphs must match: the model, adjusted when tau or a prior is set
    data: Any  # an LTDataset, or None when nothing needs data
    torch_predictor: Callable[[np.ndarray], np.ndarray]
    parity_reference: Callable[[np.ndarray], np.ndarray]  # the same, memoised: every variant sees the same inputs
    pool: np.ndarray | None  # real val images for parity, when data is there
    prior: dict[str, Any] | None = None  # the deployment prior baked in (ltzoo.calibration's record), if any


def _load_subject(
    source: str | tuple[nn.Module, ModelInfo], options: ExportOptions, data: Any, *, tau: float | None, needs_data: bool
) -> _Subject:
    """Load the model (unless given in memory), its data when a check needs it, and the reference to match."""
    with_prior = options.target_prior is not None or options.estimate_prior is not None
    config: dict[str, Any] = {}
    if isinstance(source, tuple):
        if with_prior:
            raise LtzooError(
                "--target-prior / --estimate-prior need the model's config.json: export a run, a "
                "local-dir: or hf-hub: source, not an in-memory model"
            )
        model, info = source
        spec = info.name
    else:
        model, info, config = load_source(source)
        spec = str(source)
    model.eval()
    if (needs_data or with_prior) and data is None:
        data = _build_dataset(info, options.data_root)
    if data is not None:
        TrainedOn(tuple(info.label_names), tuple(info.class_counts) if info.class_counts else None).check(data)
    reference, prior = model, None
    if tau is not None:
        if info.class_counts is None:
            raise LtzooError(f"--logit-adjust needs the training class counts, which {info.name}'s config lacks")
        reference = LogitAdjusted(model, info.class_counts, tau).eval()
    if with_prior:
        from ltzoo.calibration.job import CalibrationOptions, calibrate_model

        calibrated = calibrate_model(
            model,
            config,
            data,
            CalibrationOptions(
                method="none",
                target_prior=options.target_prior or "uniform",
                estimate_prior=options.estimate_prior,
                data_root=options.data_root,
                batch_size=options.batch_size,
            ),
        )
        reference = calibrated.model
        prior = {key: calibrated.record[key] for key in ("target_prior", "bcts", "estimate")}

    torch_predictor = _reference_predictor(reference, options.device)
    pool = _parity_pool(data) if data is not None else None
    return _Subject(model, info, spec, tau, reference, data, torch_predictor, _Memo(torch_predictor), pool, prior)


def export(
    source: str | tuple[nn.Module, ModelInfo],
    out_dir: str | os.PathLike[str],
    options: ExportOptions | None = None,
    *,
    data: Any = None,
) -> ExportReport:
    """Export ``source`` to ONNX in ``out_dir`` (fp32, and fp16 / int8 as ``options`` ask), check every graph,
    and with ``verify="dataset"`` gate each on every split; returns the report, raises ``ExportCheckError`` on
    any failure (after writing the report).

    ``source`` is what ``ltzoo.load`` accepts, or an in-memory ``(model, ModelInfo)``. ``data`` is an
    :class:`~ltzoo.data.LTDataset` to use instead of building ``info.dataset`` from ``--data-root``.
    """
    options = options or ExportOptions()
    options.validate()
    if options.int8_debug is not None and not options.int8:
        raise LtzooError("--int8-debug compares the int8 graph with fp32: add --int8")
    with output_folder(out_dir) as out:
        return _export(source, out, options, data)


def _export(source: str | tuple[nn.Module, ModelInfo], out: Path, options: ExportOptions, data: Any) -> ExportReport:
    subject = _load_subject(
        source, options, data, tau=options.logit_adjust, needs_data=options.int8 or options.verify == "dataset"
    )
    _remove_previous_export(out)
    fp32_path = out / VARIANT_FILES["fp32"]
    log.info(
        "exporting %s with the %s exporter (opset %d) to %s", subject.info.name, options.exporter, options.opset, out
    )
    exported = export_onnx(
        subject.reference, fp32_path, tuple(subject.info.input_size), opset=options.opset, exporter=options.exporter
    )

    makers: dict[str, Callable[[Path], dict[str, Any]] | None] = {"fp32": None}
    if options.fp16:
        makers["fp16"] = lambda path: convert_fp16(fp32_path, path)
    if options.int8:
        makers["int8"] = lambda path: _make_int8(fp32_path, path, subject.data, options, subject.torch_predictor)
    variants: dict[str, VariantReport] = {}
    failures: list[Failure] = []
    for variant, make in makers.items():
        path = out / VARIANT_FILES[variant]
        entry = variants[variant] = VariantReport(file=path.name)
        if make is not None:
            log.info("making the %s variant", variant)
            try:
                entry.recipe = make(path)
            except LtzooError as error:
                entry.error = str(error)
                failures.append(Failure(variant, MAKE_CHECK, reason=str(error)))
                continue
        entry.metadata = build_metadata(
            subject.info,
            variant=variant,
            exporter=options.exporter,
            opset=options.opset,
            logit_adjust_tau=subject.tau,
            int8_target=options.int8_target,
        )
        proto = load_onnx(path)
        write_metadata_props(proto, entry.metadata)
        save_model(proto, path)

    report = _check_and_report(subject, out, options, variants, failures, exported.to_dict())
    int8 = variants.get("int8")
    _raise_if_failed(
        report,
        out,
        subject.info.name,
        _int8_hint(report, _calibration_hint(options, (int8.recipe if int8 else None) or {})),
    )
    return report


def export_with_int8_fallback(
    source: str, out_dir: str | os.PathLike[str], options: ExportOptions, *, data: Any = None
) -> tuple[ExportReport, Path, str, ExportCheckError | None]:
    """Export fp32 + int8 with ``options``; when the per-split gate refuses the int8 graph (it lost tail accuracy),
    export the verified fp32 graph alone into ``<out_dir>_fp32``, so that the refused graph is never shipped.
    Returns the report, the folder and the variant to ship, and the refusal (None when int8 passed)."""
    try:
        return export(source, out_dir, dataclasses.replace(options, int8=True), data=data), Path(out_dir), "int8", None
    except ExportCheckError as refusal:
        report_path = Path(out_dir) / REPORT_FILE
        failed = read_report(report_path).failures if report_path.is_file() else []
        if not failed or any(failure.variant != "int8" for failure in failed):
            raise  # fp32 itself failed a check: nothing may ship
        fp32_dir = Path(f"{out_dir}_fp32")
        report = export(source, fp32_dir, dataclasses.replace(options, int8=False), data=data)
        return report, fp32_dir, "fp32", refusal


def recheck(
    source: str | tuple[nn.Module, ModelInfo],
    out_dir: str | os.PathLike[str],
    options: ExportOptions | None = None,
    *,
    data: Any = None,
) -> ExportReport:
    """Export nothing: re-run every check (and, with ``verify="dataset"``, the gate) on the ``.onnx`` files
    already in ``out_dir`` against ``source`` (a downloaded or edited export), with the logit adjustment and
    int8 target that the files' metadata declares. Returns the new report, raises as :func:`export` does.
    """
    options = options or ExportOptions()
    options.validate()
    with output_folder(out_dir) as out:
        return _recheck(source, out, options, data)


def _recheck(source: str | tuple[nn.Module, ModelInfo], out: Path, options: ExportOptions, data: Any) -> ExportReport:
    found = _existing_variants(out)
    if options.int8_debug is not None and "int8" not in found:
        raise LtzooError(f"--int8-debug compares the int8 graph with fp32, but {out} has no {VARIANT_FILES['int8']}")
    fp32 = found["fp32"]
    subject = _load_subject(
        source,
        options,
        data,
        tau=fp32.get("logit_adjust_tau"),
        needs_data=options.verify == "dataset" or options.int8_debug is not None,
    )
    exporter, opset = fp32.get("exporter", "unknown"), fp32.get("opset")
    int8_target = found.get("int8", {}).get("int8_target", DEFAULT_INT8_TARGET)
    log.info("re-checking %s in %s against %s", ", ".join(found), out, subject.info.name)
    variants = {
        variant: VariantReport(
            file=VARIANT_FILES[variant],
            # What the file must declare: the check compares it with the metadata_props found in the file.
            metadata=build_metadata(
                subject.info,
                variant=variant,
                exporter=exporter,
                opset=opset,
                logit_adjust_tau=subject.tau,
                int8_target=int8_target,
            ),
        )
        for variant in found
    }
    export_section = {"reused_existing_files": True, "exporter": exporter, "opset": opset}
    report = _check_and_report(subject, out, options, variants, [], export_section)
    _raise_if_failed(report, out, subject.info.name, _int8_hint(report, _recheck_fix(options)))
    return report


def _check_and_report(
    subject: _Subject,
    out: Path,
    options: ExportOptions,
    variants: dict[str, VariantReport],
    failures: list[Failure],
    export_section: dict[str, Any],
) -> ExportReport:
    """Check every variant that exists, verify on the dataset when asked, and write the report."""
    sessions: dict[str, Any] = {}
    for variant, entry in variants.items():
        if entry.error is not None:
            continue
        path = out / entry.file
        entry.sha256 = sha256_file(path)
        entry.size_bytes = path.stat().st_size
        session = _check_variant(variant, path, entry, subject, options, failures)
        if session is not None:
            sessions[variant] = session
        if variant == "int8" and options.int8_debug is not None:
            entry.int8_debug = _int8_debug(out / VARIANT_FILES["fp32"], path, subject.data, options)

    verification, gate_failures = _verify(subject, options, sessions)
    failures.extend(gate_failures)
    report = ExportReport(
        variants=variants,
        failures=failures,
        verification=verification,
        # What the report says about the model leaves the machine with it: no local path (ltzoo.portable).
        source={
            **subject.info.to_dict(),
            "spec": portable_model_source(subject.spec),
            "dataset": portable_dataset(subject.info.dataset),
        },
        export=export_section,
        options=options.to_dict(),
        independent_checks=_independent_checks(options),
        logit_adjust=(
            None
            if subject.tau is None and subject.prior is None
            else _logit_adjust_section(subject, verification, options.splits)
        ),
        versions=library_versions(),
    )
    write_report(out, report)
    return report


def _verify(subject: _Subject, options: ExportOptions, sessions: dict[str, Any]) -> tuple[Verification, list[Failure]]:
    """With ``verify="dataset"``: PyTorch and every variant scored by one evaluator on every split, and the gate."""
    if options.verify != "dataset":
        return Verification(options.verify, note="no dataset evaluation; use --verify dataset"), []
    from ltzoo.engine.evaluator import OrtPredictor

    predictors: dict[str, Any] = {REFERENCE: subject.torch_predictor}
    if subject.tau is not None or subject.prior is not None:
        predictors[UNADJUSTED] = _reference_predictor(subject.model, options.device)
    predictors.update({variant: OrtPredictor(session) for variant, session in sessions.items()})
    log.info("evaluating %s on %s", ", ".join(predictors), "/".join(options.splits))
    results = evaluate_predictors(predictors, subject.data, options.splits, options.batch_size)
    split_deltas, gate_failures = gate(results, options.max_drop)
    verification = Verification(
        mode="dataset",
        evaluator="ltzoo.engine.evaluator.evaluate_split (the same code scores PyTorch and ORT)",
        splits=list(options.splits),
        max_drop=dict(options.max_drop),
        gated_groups=list(GATED_GROUPS),
        shot_thresholds=next(iter(results[options.splits[0]].values()))["shot_thresholds"],
        results={
            split: {name: Scores.from_dict(result) for name, result in rows.items()} for split, rows in results.items()
        },
        deltas=split_deltas,
        reference_device=options.device,
    )
    return verification, gate_failures


def _reference_predictor(model: nn.Module, device: str) -> Callable[[np.ndarray], np.ndarray]:
    """The PyTorch reference on ``device``. Off the CPU it runs a copy: the predictor moves its model in place,
    and the ONNX export and int8 calibration still need the original on the CPU."""
    from ltzoo.engine.evaluator import TorchPredictor

    return TorchPredictor(model if device == "cpu" else copy.deepcopy(model), device)


def _raise_if_failed(report: ExportReport, out: Path, name: str, hint: str) -> None:
    report_path = out / REPORT_FILE
    if report.passed:
        log.info("all checks passed; report: %s", report_path)
        return
    raise ExportCheckError(
        f"export of {name} failed {len(report.failures)} check(s):\n  - "
        + "\n  - ".join(str(failure) for failure in report.failures)
        + hint
        + f"\nfull report: {report_path}"
    )


class _Memo:
    """Caches a predictor's outputs by input bytes, so the PyTorch reference runs once per parity batch."""

    def __init__(self, predictor: Callable[[np.ndarray], np.ndarray]) -> None:
        self.predictor = predictor
        self.cache: dict[tuple[tuple[int, ...], bytes], np.ndarray] = {}

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        key = (batch.shape, hashlib.sha256(batch.tobytes()).digest())
        if key not in self.cache:
            self.cache[key] = self.predictor(batch)
        return self.cache[key]


def _remove_previous_export(out: Path) -> None:
    """A fresh export replaces the whole set: a stale int8 file or report would contradict the new one."""
    for name in (*VARIANT_FILES.values(), REPORT_FILE):
        for stale in (out / name, out / f"{name}.data"):
            if stale.exists():
                log.info("removing %s from a previous export", stale)
                stale.unlink()


def _existing_variants(out: Path) -> dict[str, dict[str, Any]]:
    """The variants whose files are already in ``out``, with their decoded metadata (fp32 must be there)."""
    found = {}
    for variant, name in VARIANT_FILES.items():
        path = out / name
        if path.exists():
            found[variant] = read_metadata(path)  # CorruptFileError for garbage
    if "fp32" not in found:
        raise LtzooError(f"{out} has no {VARIANT_FILES['fp32']} to check; export first (without --verify-existing)")
    return found


def _int8_hint(report: ExportReport, fix: str) -> str:
    """When int8 lost accuracy: ``fix``, the change to try (see ``ltzoo.export.calibration`` for what auto does),
    and, with ``--int8-debug``, the tensors that lost the most and the nodes to keep in float."""
    if not any(failure.variant == "int8" and failure.is_gate for failure in report.failures):
        return ""
    int8 = report.variants.get("int8")
    return fix + _debug_hint(int8.int8_debug if int8 is not None else None)


def _debug_hint(debug: dict[str, Any] | None) -> str:
    if not debug:
        return "\nrerun with --int8-debug to see which tensors int8 rounds worst (SQNR against fp32)"
    if "error" in debug:
        return f"\n--int8-debug could not compare the graphs: {debug['error']}"
    worst = ", ".join(f"{row['tensor']} ({row['sqnr_db']:.1f} dB)" for row in debug["worst_activations"][:5])
    candidates = debug["exclude_candidates"][:5]
    retry = f"\ncandidates for nodes_to_exclude: retry with --int8-exclude {','.join(candidates)}" if candidates else ""
    return f"\nint8 rounds these tensors worst (SQNR on {debug['images']} calibration images): {worst}" + retry


def _calibration_hint(options: ExportOptions, int8_recipe: dict[str, Any]) -> str:
    """What to change when the int8 graph this export made lost accuracy."""
    larger = f"a larger --calib-size (now {options.calib_size})"
    choice = int8_recipe.get("calibration_choice")
    if choice and choice["within_threshold"]:
        return (
            f"\nint8 with {choice['chosen']} calibration (chosen by auto) kept val within the gate but not every "
            f"split: try {larger}, or ship the fp16 variant (--fp16)"
        )
    if choice:
        return (
            f"\nint8 lost accuracy on val with every calibration method auto tried: try {larger}, or ship fp16 (--fp16)"
        )
    return (
        f"\nint8 lost accuracy with {options.calib_method} calibration: retry with --calib-method auto "
        f"(chooses the method on val), or {larger}"
    )


def _recheck_fix(options: ExportOptions) -> str:
    """What to change when a re-checked int8 graph (made elsewhere, its calibration unknown here) lost accuracy."""
    return (
        f"\nint8 lost accuracy: re-export with --int8 (--calib-method auto, the default, chooses on val), "
        f"or a larger --calib-size (now {options.calib_size})"
    )


def _logit_adjust_section(subject: _Subject, verification: Verification, splits: Sequence[str]) -> dict[str, Any]:
    effect: Any = "not measured: run with --verify dataset"
    if verification.mode == "dataset":
        # deltas hold (plain - adjusted); the effect of the adjustment is the opposite sign.
        effect = {
            split: {g: None if v is None else -v for g, v in verification.deltas[split][UNADJUSTED].items()}
            for split in splits
        }
    if subject.prior is not None:
        return {
            "tau": None,
            "form": "log-posteriors under the target prior: logits / T + c + log(target prior) - log(val prior), T and "
            "c by bias-corrected temperature scaling on val (ltzoo.calibration)",
            **subject.prior,
            "effect_points_adjusted_minus_plain": effect,
        }
    return {
        "tau": subject.tau,
        "form": "logits - tau * log(prior), prior = training class frequencies (Menon et al. 2021)",
        "class_counts": list(subject.info.class_counts or []),
        "effect_points_adjusted_minus_plain": effect,
    }


def _independent_checks(options: ExportOptions) -> dict[str, Any]:
    """Which independent checks ran on the graphs (recorded even when they could not)."""
    if not options.lint:
        return {"polygraphy_lint": "skipped: --no-lint"}
    reason = lint.lint_unavailable()
    return {"polygraphy_lint": reason or f"ran on every variant ({lint.polygraphy_version()})"}


def _check_variant(
    variant: str, path: Path, entry: VariantReport, subject: _Subject, options: ExportOptions, failures: list[Failure]
) -> Any:
    """Run the checks of one variant into ``entry.checks``; returns its ORT session (None if unloadable).

    ``entry.metadata`` is what the file must declare."""
    info = subject.info

    def run(name: str, check: Callable[[], dict[str, Any]]) -> None:
        try:
            entry.checks[name] = CheckResult(True, details=check())
        except LtzooError as error:
            entry.checks[name] = CheckResult(False, reason=str(error), details=dict(getattr(error, "details", {})))
            failures.append(Failure(variant, name, reason=str(error)))

    proto = load_onnx(path)
    run("graph", lambda: checks.check_graph(path))
    run("metadata", lambda: checks.check_metadata(read_metadata(path), decode_metadata(entry.metadata)))
    run("io", lambda: checks.check_io(proto, info.input_size, info.num_classes))
    run("batch_norm_folded", lambda: checks.check_bn_folded(proto))
    if options.lint and lint.lint_unavailable() is None:
        run("polygraphy_lint", lambda: lint.check_lint(path))
    if entry.metadata.get("int8_target") == "cpu":
        entry.tensorrt_static_skipped = (
            "int8 quantized for ORT on CPU (uint8 asymmetric activations), which TensorRT cannot take; "
            "export with --int8-target tensorrt for a TensorRT-ready int8 graph"
        )
    else:
        run("tensorrt_static", lambda: tensorrt.static_check(path, options.trt_profile))
    try:
        session = create_session(path, options.provider)
    except LtzooError as error:
        entry.checks["onnxruntime"] = CheckResult(False, reason=str(error))
        failures.append(Failure(variant, "onnxruntime", reason=str(error)))
        return None
    entry.providers = session.get_providers()
    if options.verify != "none":
        tolerance = checks.PARITY_TOLERANCES[variant]
        if variant == "fp32" and entry.providers[0] != "CPUExecutionProvider":
            # GPU providers may run fp32 convolutions with TF32 math (10-bit mantissa): judge at fp16 tolerance.
            tolerance = checks.PARITY_TOLERANCES["fp16"]
        run(
            "parity",
            lambda: checks.check_parity(
                session,
                subject.parity_reference,
                info.input_size,
                tolerance,
                pool=subject.pool,
                export_batch=EXPORT_BATCH,
            ),
        )
    return session


def _build_dataset(info: ModelInfo, data_root: str | None) -> Any:
    if not info.dataset:
        raise LtzooError(
            f"{info.name}'s config names no dataset, but int8 calibration and --verify dataset need its data"
        )
    from ltzoo.data import build_dataset

    return build_dataset(info.dataset, data_root)


def _preprocessed(data: Any, split: str, indices: Sequence[int], batch_size: int = 32) -> Iterator[np.ndarray]:
    """Batches of ``split`` images at ``indices`` through the eval transform (what deployment feeds)."""
    from torch.utils.data import DataLoader, Subset

    from ltzoo.data import TransformedDataset, eval_transform

    dataset = TransformedDataset(Subset(data.split(split), list(indices)), eval_transform(data.info))
    for images, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        yield np.ascontiguousarray(images.numpy(), dtype=np.float32)


def _parity_pool(data: Any) -> np.ndarray:
    """The first images of each class in val (deterministic), for parity on realistic inputs."""
    targets = np.asarray(data.split("val").targets)
    per_class = max(1, PARITY_POOL_SIZE // max(1, data.num_classes))
    indices = np.concatenate([np.flatnonzero(targets == c)[:per_class] for c in range(data.num_classes)])
    return np.concatenate(list(_preprocessed(data, "val", np.sort(indices))))


def _calibration_indices(data: Any, options: ExportOptions) -> np.ndarray:
    """The class-balanced draw from the training split that int8 calibrates on."""
    return class_balanced_indices(data.split("train").targets, data.num_classes, options.calib_size, options.calib_seed)


def _int8_debug(fp32_path: Path, int8_path: Path, data: Any, options: ExportOptions) -> dict[str, Any]:
    """qdq_loss_debug on a class-balanced subset of the calibration images (see ltzoo.export.int8_debug)."""
    indices = _calibration_indices(data, options)
    targets = np.asarray(data.split("train").targets)[indices]
    size = min(DEBUG_IMAGES, len(indices))
    subset = indices[class_balanced_indices(targets, data.num_classes, size, options.calib_seed)]
    log.info("comparing int8 with fp32 tensor by tensor on %d calibration images", len(subset))
    try:
        result = int8_debug(
            fp32_path,
            int8_path,
            _preprocessed(data, "train", subset, batch_size=DEBUG_CHUNK),
            worst=options.int8_debug or 1,
        )
    except Exception as error:  # a diagnostic: its failure is recorded, it does not hide the export's own result
        log.warning("--int8-debug failed: %s", error)
        return {"error": f"{type(error).__name__}: {error}"}
    result["images_from"] = "a class-balanced subset of the int8 calibration images (training split, eval transform)"
    return result


def _make_int8(
    src: Path, dst: Path, data: Any, options: ExportOptions, reference: Callable[[np.ndarray], np.ndarray]
) -> dict[str, Any]:
    from ltzoo.engine.evaluator import OrtPredictor, evaluate_split

    targets = data.split("train").targets
    indices = _calibration_indices(data, options)
    per_class = np.bincount(np.asarray(targets)[indices], minlength=data.num_classes).tolist()

    def quantize(method: str, path: Path) -> dict[str, Any]:
        batches = _preprocessed(data, "train", indices, batch_size=CALIBRATION_BATCH)
        return quantize_int8(
            src, path, batches, method=method, target=options.int8_target, exclude=options.int8_exclude
        )

    if options.calib_method != AUTO_CALIBRATION:
        recipe = quantize(options.calib_method, dst)
    else:

        def score(path: Path) -> dict[str, Any]:
            session = create_session(path, options.provider)
            return evaluate_split(OrtPredictor(session), data, SELECTION_SPLIT, options.batch_size)

        reference_val = evaluate_split(reference, data, SELECTION_SPLIT, options.batch_size)
        recipe = choose_calibration(quantize, score, reference_val, dst, options.max_drop["int8"])
    recipe["calibration"] = {
        "split": "train",
        "size_requested": options.calib_size,
        "size": int(len(indices)),
        "seed": options.calib_seed,
        "sampling": "class-balanced: every class gets min(its count, q) images for the largest q that fits, "
        "leftovers one each to random classes with images left",
        "per_class": per_class,
        "transform": "eval (the deployment preprocessing), no augmentation",
        "classes_missing": [c for c, n in enumerate(per_class) if n == 0],
    }
    return recipe
