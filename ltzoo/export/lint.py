"""A second opinion on every graph: NVIDIA Polygraphy's ``check lint``, when it is installed.

Every other check of the export is ltzoo's own. Polygraphy's linter is independent of them: it runs the
ONNX checker and ONNX Runtime over the graph (node by node when the whole graph fails) on generated
inputs, and reports faulty nodes, unused nodes and inputs, and duplicate names. It needs no TensorRT and
no GPU. It is optional (``pip install 'ltzoo[lint]'``: polygraphy and onnx-graphsurgeon); the export
report says whether it ran. Errors fail the export like any other check; warnings are recorded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ltzoo.errors import ExportCheckError
from ltzoo.export.onnx_export import quiet

INSTALL_HINT = "pip install 'ltzoo[lint]'"
REQUIRED_MODULES = ("polygraphy", "onnx_graphsurgeon")


def lint_unavailable() -> str | None:
    """Why the linter cannot run here (None when it can)."""
    missing = [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]
    return f"not installed ({', '.join(missing)} missing): {INSTALL_HINT}" if missing else None


def polygraphy_version() -> str:
    import polygraphy

    return str(polygraphy.__version__)


def check_lint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``polygraphy check lint PATH``; returns what it saw, raises ``ExportCheckError`` on any lint error."""
    import polygraphy.config
    from polygraphy.logger import G_LOGGER
    from polygraphy.tools import main as polygraphy_main

    polygraphy.config.AUTOINSTALL_DEPS = False  # an export never pip-installs anything
    severity = G_LOGGER.module_severity
    G_LOGGER.module_severity = G_LOGGER.CRITICAL
    try:
        with tempfile.TemporaryDirectory() as tmp, quiet():
            out = Path(tmp) / "lint.json"
            code = polygraphy_main(["check", "lint", str(path), "-o", str(out)])
            report = json.loads(out.read_text()) if out.is_file() else None
    finally:
        G_LOGGER.module_severity = severity
    if report is None:
        raise ExportCheckError(f"polygraphy check lint could not read {Path(path).name} (exit code {code})")
    entries = report.get("lint_entries") or []
    errors = [entry for entry in entries if entry.get("level") == "exception"]
    warnings = [entry for entry in entries if entry.get("level") != "exception"]
    summary = report.get("summary") or {}
    result = {
        "tool": f"polygraphy {polygraphy_version()} check lint",
        "nodes_passing": len(summary.get("passing") or []),
        "nodes_failing": sorted(summary.get("failing") or []),
        "warnings": [_entry_text(entry) for entry in warnings],
    }
    if errors or code != 0:
        error = ExportCheckError(
            f"polygraphy check lint found {len(errors)} error(s) in {Path(path).name}: "
            + "; ".join(_entry_text(entry) for entry in errors[:3])
        )
        error.details = {**result, "errors": [_entry_text(entry) for entry in errors]}  # type: ignore[attr-defined]
        raise error
    return result


def _entry_text(entry: dict[str, Any]) -> str:
    nodes = entry.get("nodes")
    where = f"{', '.join(nodes)}: " if nodes else ""
    return f"{where}{' '.join(str(entry.get('message', '')).split())} ({entry.get('source')})"
