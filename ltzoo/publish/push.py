"""Push a training run to the Hub in one commit: weights, config, card, plot and (optionally) ONNX graphs.

The commit is atomic on the Hub side (``create_commit``) and guarded by ``parent_commit``: if the branch
moves between reading its head and committing, the Hub answers 412 and nothing is written. Nothing is
written locally either: generated files (card, plot, config) go up as bytes. The pushed config is the
run's portable form (:func:`ltzoo.portable.portable_config`), and before anything is sent every file is
searched for this machine's folders (:func:`ltzoo.portable.local_paths_in`): a hit refuses the push.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.hf_api import CommitInfo

from ltzoo import names
from ltzoo.calibration.plot import calibration_curves_png
from ltzoo.errors import CorruptFileError, DataNotFoundError, HubError
from ltzoo.export.report import ExportReport, read_report
from ltzoo.fileio import sha256_file
from ltzoo.hub import layout
from ltzoo.hub.errors import hub_errors
from ltzoo.hub.settings import DEFAULT_ENDPOINT, hub_settings
from ltzoo.portable import (
    local_paths_in,
    machine_needles,
    machine_paths_in,
    machine_paths_in_text,
    portable_config,
    recorded_local_folders,
)
from ltzoo.publish.card import class_groups, read_metrics, render_card
from ltzoo.publish.plot import per_class_accuracy_png
from ltzoo.runs import read_config
from ltzoo.version import __version__

# What an export folder contributes: the graphs, their external-data side files, and the report.
ONNX_PATTERNS = ("*.onnx", "*.onnx.data", names.REPORT_FILE)


@dataclass(frozen=True)
class RunForPush:
    run_dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    weights: Path
    weights_sha256: str


def read_run_for_push(run_dir: str | Path) -> RunForPush:
    """Read and check a run directory: ltzoo config, metrics, weights matching their recorded sha256."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataNotFoundError(
            f"run directory {run_dir} does not exist; train one with `ltzoo train NAME --out {run_dir}`"
        )
    config = read_config(run_dir)
    if not isinstance(config.get(names.CONFIG_BLOCK), dict):
        raise CorruptFileError(
            f"{run_dir}/config.json has no '{names.CONFIG_BLOCK}' block; only ltzoo runs can be pushed"
        )
    weights = run_dir / names.MODEL_FILE
    if not weights.is_file():
        raise DataNotFoundError(f"{weights} not found: the run has no weights (did training finish?)")
    sha = sha256_file(weights)
    recorded = config[names.CONFIG_BLOCK].get(names.WEIGHTS_SHA256_KEY)
    if recorded and recorded != sha:
        raise CorruptFileError(
            f"{weights} has sha256 {sha} but config.json records {recorded}; the weights changed after training"
        )
    return RunForPush(run_dir, config, read_metrics(run_dir), weights, sha)


def _onnx_files(onnx_dir: Path, weights_sha256: str) -> tuple[list[Path], ExportReport]:
    """The export folder's files to publish, and its report (required: it is the proof the graphs were checked)."""
    if not onnx_dir.is_dir():
        raise DataNotFoundError(
            f"ONNX folder {onnx_dir} does not exist; export with `python export/to_onnx.py --out {onnx_dir}`"
        )
    report_path = onnx_dir / names.REPORT_FILE
    if not report_path.is_file():
        raise DataNotFoundError(
            f"{onnx_dir} has no {names.REPORT_FILE}; export with `python export/to_onnx.py ... --verify` first"
        )
    report = read_report(report_path)
    files = sorted({p for pattern in ONNX_PATTERNS for p in onnx_dir.glob(pattern) if p.is_file()})
    if not any(p.suffix == ".onnx" for p in files):
        raise DataNotFoundError(f"{onnx_dir} has no .onnx file to publish")
    # Graphs exported from other weights would silently disagree with model.safetensors on the Hub.
    source = report.source_weights_sha256
    if source and source != weights_sha256:
        raise CorruptFileError(
            f"{report_path} says the graphs were exported from weights {source}, but the run's model.safetensors "
            f"is {weights_sha256}; re-export this run before pushing"
        )
    return files, report


def plot_png(run: RunForPush) -> bytes:
    lt = run.config[names.CONFIG_BLOCK]
    counts = list(lt.get("class_counts") or [])
    per_class = {s: run.metrics[s].get("per_class") or [None] * len(counts) for s in ("val", "test")}
    return per_class_accuracy_png(
        counts,
        per_class,
        class_groups(lt.get("shot_split") or {}, len(counts)),
        label_names=run.config.get("label_names"),
        title=f"{lt.get('name', '')}: per-class top-1 vs training images",
    )


def build_operations(
    run: RunForPush, repo_id: str, onnx_dir: Path | None, hub_url: str = DEFAULT_ENDPOINT
) -> tuple[list[CommitOperationAdd], list[str]]:
    """The commit's additions (all of them) and the repo paths they cover."""
    config = portable_config(run.config)
    config[names.CONFIG_BLOCK][names.WEIGHTS_SHA256_KEY] = run.weights_sha256  # what download_run checks
    onnx_paths: list[Path] = []
    report = None
    if onnx_dir is not None:
        onnx_paths, report = _onnx_files(Path(onnx_dir), run.weights_sha256)
    onnx_repo_paths = [f"{layout.ONNX_DIR}/{p.name}" for p in onnx_paths]
    card = render_card(
        config,
        run.metrics,
        repo_id,
        export_report=report,
        onnx_files=onnx_repo_paths,
        weights_sha256=run.weights_sha256,
        hub_url=hub_url,
    )
    ops = [
        CommitOperationAdd(names.MODEL_FILE, str(run.weights)),
        CommitOperationAdd(names.CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode()),
        CommitOperationAdd(layout.CARD, str(card).encode()),
        CommitOperationAdd(layout.PLOT, plot_png(run)),
    ]
    calibration = run.config[names.CONFIG_BLOCK].get("calibration")
    if calibration:  # the val curves the card shows, drawn from the record (the run's own PNG is not trusted)
        ops.append(CommitOperationAdd(names.CALIBRATION_PLOT, calibration_curves_png(calibration)))
    ops += [CommitOperationAdd(repo_path, str(path)) for repo_path, path in zip(onnx_repo_paths, onnx_paths)]
    refuse_local_paths(ops, run, onnx_dir)
    return ops, [op.path_in_repo for op in ops]


def refuse_local_paths(ops: list[CommitOperationAdd], run: RunForPush, onnx_dir: Path | None) -> None:
    """Raise if any file about to be pushed names a path of this machine (nothing has been sent yet).

    First every string of what ltzoo wrote (config, card, export report, ONNX metadata) is searched for any
    absolute path on this machine, and the refusal names the file and key; then every byte of every file is
    searched for the run's, its data's and its export's folders and this machine's home, temp and working
    folders (a relative path resolved elsewhere, a path inside a binary)."""
    for op in ops:
        for where, path in _machine_paths(op):
            raise HubError(
                f"{op.path_in_repo} would publish a path of this machine at {where} ({path}); nothing was pushed. "
                + _how_to_fix(op.path_in_repo, run)
            )
    folders = [run.run_dir, *recorded_local_folders(run.config), *([onnx_dir] if onnx_dir is not None else [])]
    needles = machine_needles(folders)
    for op in ops:
        content = op.path_or_fileobj if isinstance(op.path_or_fileobj, bytes) else Path(str(op.path_or_fileobj))
        found = local_paths_in(content, needles)
        if found:
            raise HubError(
                f"{op.path_in_repo} would publish a path of this machine ({', '.join(found[:3])}); nothing was pushed. "
                + _how_to_fix(op.path_in_repo, run)
            )


def _machine_paths(op: CommitOperationAdd) -> list[tuple[str, str]]:
    """``(where, path)`` of this machine's absolute paths in a text file ltzoo wrote for the commit."""
    content = op.path_or_fileobj
    if op.path_in_repo.endswith(".onnx"):
        from ltzoo.export.metadata import read_metadata  # onnx: only when graphs are pushed

        return [(f"metadata_props {key}", path) for key, path in machine_paths_in(read_metadata(str(content)))]
    if op.path_in_repo in (names.CONFIG_FILE, layout.ONNX_DIR + "/" + names.REPORT_FILE):
        text = content.decode() if isinstance(content, bytes) else Path(str(content)).read_text()
        return [(f"key {key}", path) for key, path in machine_paths_in(json.loads(text))]
    if op.path_in_repo == layout.CARD:
        text = content.decode() if isinstance(content, bytes) else Path(str(content)).read_text()
        return [
            (f"line {number}", path)
            for number, line in enumerate(text.splitlines(), 1)
            for path in machine_paths_in_text(line)
        ]
    return []


def _how_to_fix(path_in_repo: str, run: RunForPush) -> str:
    if path_in_repo.startswith(f"{layout.ONNX_DIR}/"):
        return "Re-export the graphs with the current ltzoo (its reports and metadata record no local paths)."
    return (
        f"Remove the path from {run.run_dir}/{names.CONFIG_FILE} (ltzoo itself records data sources, data "
        "folders and --init runs by folder name when it publishes) and push again."
    )


def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    onnx_dir: str | Path | None = None,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
    parent_commit: str | None = None,
    commit_message: str | None = None,
) -> CommitInfo:
    """Push a run in one commit and return its :class:`CommitInfo` (a ``str``: the commit URL).

    ``revision`` is the target branch (created from main if missing); ``create_pr`` opens a pull request
    (``refs/pr/N``) instead of committing to the branch; ``parent_commit`` defaults to the branch head
    read just before committing. Endpoint and token default to ``HF_ENDPOINT`` / ``HF_TOKEN`` at call time.
    ONNX files from an earlier push that this push does not include are deleted in the same commit, so
    the repo never mixes graphs from different weights.
    """
    run = read_run_for_push(run_dir)
    settings = hub_settings(endpoint, token)
    if not settings.token:
        raise HubError(f"pushing to {repo_id} needs a write token: set HF_TOKEN or pass --token")
    operations, paths = build_operations(
        run, repo_id, Path(onnx_dir) if onnx_dir is not None else None, hub_url=settings.endpoint
    )
    branch = revision or "main"
    api = HfApi(endpoint=settings.endpoint, token=settings.token, library_name="ltzoo", library_version=__version__)
    with hub_errors(what="push to", repo_id=repo_id, revision=revision, settings=settings):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        head = parent_commit or api.repo_info(repo_id, revision=branch).sha
        existing = api.list_repo_files(repo_id, revision=head)
        stale = [p for p in existing if p.startswith(f"{layout.ONNX_DIR}/") and p not in paths]
        name = run.config[names.CONFIG_BLOCK].get("name", run.run_dir.name)
        return api.create_commit(
            repo_id,
            operations + [CommitOperationDelete(p) for p in stale],
            commit_message=commit_message or f"ltzoo push: {name} (weights {run.weights_sha256[:12]})",
            commit_description=f"Pushed by ltzoo {__version__} from run {run.run_dir.name}.",
            revision=branch,
            create_pr=create_pr,
            parent_commit=head,
        )
