"""The export report: one typed record of what an export made and checked, saved as ``export_report.json``.

:func:`ltzoo.export.export` returns an :class:`ExportReport` and writes it next to the graphs; the Hub
code (card, push, download) and ``ltzoo trt`` read it back with :func:`read_report`. Each variant's
checks are :class:`CheckResult` records, the per-split accuracy of PyTorch and every variant are
:class:`Scores`, and every failure is a :class:`Failure` record (variant, check, split, value, limit),
so a reader asks "did int8 fail the gate?" with a comparison, never by matching the start of a sentence.

This module imports nothing heavy: the Hub reads reports without loading the export pipeline.

Versions: 2 stores failures as records. Version 1 reports (failures as sentences, written before the
record existed) still load: their sentences are parsed back into records.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ltzoo.errors import CorruptFileError
from ltzoo.fileio import atomic_write_bytes, read_json
from ltzoo.names import REPORT_FILE

REPORT_VERSION = 2
REFERENCE = "pytorch"  # the PyTorch model's name in the per-split results; every variant is compared with it
GROUPS = ("all", "many", "medium", "few")
MAKE_CHECK = "make"  # the check a variant fails when it could not be made at all
_GATE_CHECK_PREFIX = "top1_"  # accuracy-gate checks: top1_all, top1_few


@dataclass(frozen=True)
class Failure:
    """One failed check of one variant. For the accuracy gate ``split`` is set, and ``value`` and ``limit`` are
    the drop in top-1 points against PyTorch and the drop allowed; ``reason`` says what was seen."""

    variant: str
    check: str
    split: str | None = None
    value: float | None = None
    limit: float | None = None
    reason: str = ""

    @property
    def is_gate(self) -> bool:
        """Whether this is the accuracy gate (a variant that lost top-1 on a split), not a graph check."""
        return self.check.startswith(_GATE_CHECK_PREFIX)

    def __str__(self) -> str:
        if self.is_gate:
            return (
                f"{self.variant} on {self.split}: {self.reason} (drop {self.value:.2f} pt > allowed {self.limit:g} pt)"
            )
        return f"{self.variant}: {self.check}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "check": self.check,
            "split": self.split,
            "value": self.value,
            "limit": self.limit,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Failure:
        if isinstance(data, str):  # a version 1 report
            return cls.from_sentence(data)
        return cls(
            str(data.get("variant", "")),
            str(data.get("check", "")),
            data.get("split"),
            data.get("value"),
            data.get("limit"),
            str(data.get("reason", "")),
        )

    @classmethod
    def from_sentence(cls, sentence: str) -> Failure:
        """The record behind a version 1 failure sentence (as :meth:`__str__` writes it)."""
        gate = _GATE_SENTENCE.match(sentence)
        if gate:
            return cls(
                gate["variant"],
                gate_check(gate["group"]),
                gate["split"],
                float(gate["value"]),
                float(gate["limit"]),
                gate["reason"],
            )
        made = _MADE_SENTENCE.match(sentence)
        if made:
            return cls(made["variant"], MAKE_CHECK, reason=made["reason"])
        check = _CHECK_SENTENCE.match(sentence)
        if check:
            return cls(check["variant"], check["check"], reason=check["reason"])
        return cls("", "unknown", reason=sentence)


def gate_check(group: str) -> str:
    """The check name of the accuracy gate on one group (``few`` -> ``top1_few``)."""
    return _GATE_CHECK_PREFIX + group


_GATE_SENTENCE = re.compile(
    r"^(?P<variant>\S+) on (?P<split>\S+): (?P<reason>(?P<group>\w+) top-1 .*) "
    r"\(drop (?P<value>[-+\d.e]+) pt > allowed (?P<limit>[-+\d.e]+) pt\)$",
    re.DOTALL,
)
_MADE_SENTENCE = re.compile(r"^(?P<variant>[^\s:]+): could not be made: (?P<reason>.*)$", re.DOTALL)
_CHECK_SENTENCE = re.compile(r"^(?P<variant>[^\s:]+): (?P<check>[^\s:]+): (?P<reason>.*)$", re.DOTALL)


@dataclass(frozen=True)
class CheckResult:
    """One check of one graph: whether it passed, why not, and what it measured (``details``: e.g. parity's
    ``max_abs_diff`` and ``top1_agreement``, the linter's failing nodes)."""

    passed: bool
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, **({"reason": self.reason} if self.reason is not None else {}), **self.details}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        details = {key: value for key, value in data.items() if key not in ("passed", "reason")}
        return cls(bool(data.get("passed", False)), data.get("reason"), details)


@dataclass(frozen=True)
class Scores:
    """Top-1 (%) of one model on one split: overall, on the many/medium/few-shot classes and per class (None
    where the split has no image of that kind)."""

    all: float | None
    many: float | None = None
    medium: float | None = None
    few: float | None = None
    per_class: list[float | None] = field(default_factory=list)
    num_samples: int | None = None

    def group(self, name: str) -> float | None:
        if name not in GROUPS:
            raise KeyError(f"no group {name!r}; the groups are {GROUPS}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{group: self.group(group) for group in GROUPS},
            "per_class": list(self.per_class),
            "num_samples": self.num_samples,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scores:
        """From a result of :func:`ltzoo.engine.evaluator.evaluate_split` or a report (other keys are ignored)."""
        return cls(*(data.get(group) for group in GROUPS), list(data.get("per_class") or []), data.get("num_samples"))


# split -> model name -> group -> variant minus PyTorch, in points (None where a group has no class)
Deltas = dict[str, dict[str, dict[str, float | None]]]


@dataclass
class Verification:
    """How the graphs were verified: ``mode`` none / parity / dataset; with dataset, the per-split scores of
    PyTorch (:data:`REFERENCE`) and every variant, their deltas, and the gate's thresholds."""

    mode: str
    note: str | None = None
    evaluator: str | None = None
    splits: list[str] = field(default_factory=list)
    max_drop: dict[str, float] = field(default_factory=dict)
    gated_groups: list[str] = field(default_factory=list)
    shot_thresholds: dict[str, Any] | None = None
    results: dict[str, dict[str, Scores]] = field(default_factory=dict)  # split -> model name -> scores
    deltas: Deltas = field(default_factory=dict)
    reference_device: str = "cpu"  # where the PyTorch reference ran (fp32, no TF32); the graphs ran on ORT

    def to_dict(self) -> dict[str, Any]:
        if self.mode != "dataset":
            return {"mode": self.mode, **({"note": self.note} if self.note else {})}
        return {
            "mode": self.mode,
            "evaluator": self.evaluator,
            "splits": list(self.splits),
            "max_drop": dict(self.max_drop),
            "gated_groups": list(self.gated_groups),
            "shot_thresholds": self.shot_thresholds,
            "results": {
                split: {name: scores.to_dict() for name, scores in rows.items()} for split, rows in self.results.items()
            },
            "deltas": self.deltas,
            "reference_device": self.reference_device,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verification:
        # A version 1 report also lists the gate's failures here; they are the report's own failures too.
        results = {
            split: {name: Scores.from_dict(scores) for name, scores in (rows or {}).items()}
            for split, rows in (data.get("results") or {}).items()
        }
        return cls(
            mode=str(data.get("mode", "none")),
            note=data.get("note"),
            evaluator=data.get("evaluator"),
            splits=list(data.get("splits") or results),
            max_drop=dict(data.get("max_drop") or {}),
            gated_groups=list(data.get("gated_groups") or []),
            shot_thresholds=data.get("shot_thresholds"),
            results=results,
            deltas=data.get("deltas") or {},
            reference_device=str(data.get("reference_device", "cpu")),
        )


@dataclass
class VariantReport:
    """One exported graph (fp32, fp16 or int8): its file, how it was made, its metadata and its checks."""

    file: str
    checks: dict[str, CheckResult] = field(default_factory=dict)
    recipe: dict[str, Any] | None = None  # how it was made (int8: quantization and calibration)
    error: str | None = None  # why it could not be made (then it has no checks)
    metadata: dict[str, str] = field(default_factory=dict)  # exactly the metadata_props written into the file
    sha256: str | None = None
    size_bytes: int | None = None
    providers: list[str] | None = None  # the ONNX Runtime providers its checks ran on
    tensorrt_static_skipped: str | None = None  # why the TensorRT check does not apply (a CPU-only int8 graph)
    int8_debug: dict[str, Any] | None = None  # --int8-debug: the tensors int8 rounds worst
    tensorrt: dict[str, Any] | None = None  # added later by ``ltzoo trt``

    @property
    def passed(self) -> bool:
        return self.error is None and all(check.passed for check in self.checks.values())

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"file": self.file, "checks": {name: c.to_dict() for name, c in self.checks.items()}}
        optional = {
            "recipe": self.recipe,
            "error": self.error,
            "metadata": self.metadata or None,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "providers": self.providers,
            "tensorrt_static_skipped": self.tensorrt_static_skipped,
            "int8_debug": self.int8_debug,
            "tensorrt": self.tensorrt,
        }
        return entry | {key: value for key, value in optional.items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantReport:
        return cls(
            file=str(data.get("file", "")),
            checks={name: CheckResult.from_dict(check) for name, check in (data.get("checks") or {}).items()},
            recipe=data.get("recipe"),
            error=data.get("error"),
            metadata=dict(data.get("metadata") or {}),
            sha256=data.get("sha256"),
            size_bytes=data.get("size_bytes"),
            providers=data.get("providers"),
            tensorrt_static_skipped=data.get("tensorrt_static_skipped"),
            int8_debug=data.get("int8_debug"),
            tensorrt=data.get("tensorrt"),
        )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class ExportReport:
    """Everything an export made and checked. ``passed`` is true exactly when ``failures`` is empty.

    ``source`` describes the model (its :class:`~ltzoo.export.metadata.ModelInfo` fields, with the source and
    dataset in their portable form), ``export`` how the graphs were made (exporter, opset; or that existing
    files were re-checked), ``options`` the options used.
    """

    variants: dict[str, VariantReport] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    verification: Verification = field(default_factory=lambda: Verification("none"))
    source: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    independent_checks: dict[str, str] = field(default_factory=dict)
    logit_adjust: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=_now)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def gate_failures(self) -> list[Failure]:
        return [failure for failure in self.failures if failure.is_gate]

    @property
    def source_weights_sha256(self) -> str | None:
        """The sha256 of the weights the graphs were exported from (what every graph's metadata records)."""
        for entry in self.variants.values():
            if entry.metadata.get("source_weights_sha256"):
                return entry.metadata["source_weights_sha256"]
        return self.source.get("weights_sha256") or None

    def to_dict(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "report_version": REPORT_VERSION,  # the layout written here, whatever version was read
            "created": self.created,
            "source": self.source,
            "versions": self.versions,
            "options": self.options,
            "independent_checks": self.independent_checks,
            "export": self.export,
            "variants": {variant: entry.to_dict() for variant, entry in self.variants.items()},
            "verification": self.verification.to_dict(),
        }
        if self.logit_adjust is not None:
            report["logit_adjust"] = self.logit_adjust
        return report | {"passed": self.passed, "failures": [failure.to_dict() for failure in self.failures]}

    @classmethod
    def from_dict(cls, data: Any) -> ExportReport:
        """A report of any version (see the module docstring); :class:`CorruptFileError` when it is none."""
        if not isinstance(data, dict) or not isinstance(data.get("variants", {}), dict):
            raise CorruptFileError("not an ltzoo export report (expected an object with 'variants'); re-run the export")
        try:
            return cls(
                variants={variant: VariantReport.from_dict(entry) for variant, entry in data["variants"].items()}
                if "variants" in data
                else {},
                failures=[Failure.from_dict(failure) for failure in data.get("failures") or []],
                verification=Verification.from_dict(data.get("verification") or {}),
                source=dict(data.get("source") or {}),
                export=dict(data.get("export") or {}),
                options=dict(data.get("options") or {}),
                independent_checks=dict(data.get("independent_checks") or {}),
                logit_adjust=data.get("logit_adjust") if isinstance(data.get("logit_adjust"), dict) else None,
                versions=dict(data.get("versions") or {}),
                created=str(data.get("created", "")),
            )
        except (AttributeError, TypeError, ValueError) as error:  # a field of the wrong type somewhere inside
            raise CorruptFileError(f"not a readable ltzoo export report ({error}); re-run the export") from error


def write_report(out_dir: str | os.PathLike[str], report: ExportReport) -> Path:
    """Write ``export_report.json`` into ``out_dir`` atomically (a crash never leaves half a report)."""
    path = Path(out_dir) / REPORT_FILE
    atomic_write_bytes(path, (json.dumps(report.to_dict(), indent=2, default=_json_default) + "\n").encode())
    return path


def read_report(path: str | os.PathLike[str]) -> ExportReport:
    """The report in an export folder, or in the file ``path``; :class:`CorruptFileError` if missing or unreadable."""
    path = Path(path)
    path = path / REPORT_FILE if path.is_dir() else path
    try:
        data = read_json(path, remedy="re-run the export")
    except FileNotFoundError as error:
        raise CorruptFileError(f"no {REPORT_FILE} in {path.parent}; run export/to_onnx.py first") from error
    try:
        return ExportReport.from_dict(data)
    except CorruptFileError as error:
        raise CorruptFileError(f"{path}: {error}") from error


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars/arrays in what a check measured
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to the export report")
