"""ONNX Runtime sessions of exported graphs, wherever they are: a local export folder or file, a Hub repo pushed
with ``--onnx`` (``hf-hub:ORG/NAME[@rev]``), or a zoo name's pinned repo. A downloaded graph is checked against
the sha256 its export report records, as the weights are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ltzoo import names
from ltzoo.errors import HubError
from ltzoo.export.report import ExportReport, read_report
from ltzoo.fileio import sha256_file
from ltzoo.hub import layout
from ltzoo.hub.download import download_file, evict_cached_file
from ltzoo.hub.errors import HubFileMissingError
from ltzoo.hub.settings import hub_settings
from ltzoo.source import parse_source

if TYPE_CHECKING:
    import onnxruntime as ort


def _onnx_filename(variant: str, report: ExportReport | None) -> str:
    """The file of an ONNX variant: as export_report.json lists it, else the exporter's naming convention."""
    entry = report.variants.get(variant) if report is not None else None
    if entry is not None and entry.file:
        return Path(entry.file).name
    if variant not in names.VARIANT_FILES:
        raise HubError(f"unknown ONNX variant {variant!r}; choose one of {sorted(names.VARIANT_FILES)}")
    return names.VARIANT_FILES[variant]


def resolve_onnx_file(source: str, variant: str = "fp32") -> Path:
    """Local path of the ONNX graph ``variant`` for ``hf-hub:ORG/NAME[@rev]``, a zoo name, a folder or a file
    (any source :func:`ltzoo.source.parse_source` takes)."""
    parsed = parse_source(source)
    if parsed.kind == "local":
        local = parsed.path
        if local.is_file():
            return local
        for folder in (local, local / layout.ONNX_DIR):
            report_path = folder / names.REPORT_FILE
            report = read_report(report_path) if report_path.is_file() else None
            candidate = folder / _onnx_filename(variant, report)
            if candidate.is_file():
                return candidate
        raise HubError(
            f"no {variant} ONNX graph under {local}; "
            f"export one with `python export/to_onnx.py --model ... --out {local}`"
        )

    if parsed.kind == "hub":
        repo_id, revision = parsed.repo_id, parsed.revision
    else:
        from ltzoo.registry import get_entry  # a zoo name: its pinned repo and revision

        entry = get_entry(parsed.text)
        if entry.weights is None:
            raise HubError(f"{entry.name} has no published weights, so no published ONNX graph; {entry.how_to_train()}")
        repo_id, revision = entry.weights.repo_id, entry.weights.revision

    settings = hub_settings()
    report = None
    try:
        report_path = download_file(repo_id, f"{layout.ONNX_DIR}/{names.REPORT_FILE}", revision, settings)
        report = read_report(report_path)
        revision = report_path.parent.parent.name  # pin the commit, as download_run does
    except HubFileMissingError:
        pass  # no report: the file names follow the convention
    filename = _onnx_filename(variant, report)
    try:
        path = download_file(repo_id, f"{layout.ONNX_DIR}/{filename}", revision, settings)
    except HubFileMissingError:
        raise HubError(
            f"{repo_id} has no {variant} ONNX graph ({layout.ONNX_DIR}/{filename}); push one with "
            f"`ltzoo push --model RUN_DIR --repo-id {repo_id} --onnx EXPORT_DIR`."
        ) from None
    # The export report records each graph's sha256: check it like the weights', evicting a bad copy.
    entry = report.variants.get(variant) if report is not None else None
    expected = entry.sha256 if entry is not None else None
    if expected and sha256_file(path) != expected:
        evict_cached_file(path)
        raise HubError(
            f"{repo_id}: {layout.ONNX_DIR}/{filename} does not match the sha256 in its export report; the cached copy "
            "was deleted, so the next call downloads it again. If this repeats, re-push the export."
        )
    return path


def load_onnx_session(source: str, variant: str = "fp32", *, provider: str | None = None) -> ort.InferenceSession:
    """A ready ONNX Runtime session for a published graph (``hf-hub:ORG/NAME[@rev]``, zoo name, or local path).

    ``variant`` is ``fp32``, ``fp16`` or ``int8``; ``provider`` as in :func:`ltzoo.export.providers.select_providers`.
    """
    from ltzoo.export.providers import create_session

    return create_session(resolve_onnx_file(source, variant), provider=provider)
