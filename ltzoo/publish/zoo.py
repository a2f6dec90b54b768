"""Fill the Hub with the zoo: push every trained zoo entry found in a runs directory (``ltzoo publish-zoo``).

Each run goes to ``NAMESPACE/<zoo name>`` in its own commit (see :func:`ltzoo.publish.push.push_run`), and
its pin (repo, commit, weights sha256, headline test top-1) is written to the pins file right after its
push succeeds (:mod:`ltzoo.pins`), so an interrupted publish still records every entry it published
and ``ltzoo.load(NAME)`` serves it.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ltzoo import names
from ltzoo.errors import CorruptFileError, HubError, LtzooError, UnknownModelError
from ltzoo.fileio import read_json, sha256_file
from ltzoo.hub import layout
from ltzoo.pins import HEADLINE_SPLIT, HeadlineMetrics, HubWeights, write_pins
from ltzoo.publish.card import read_metrics
from ltzoo.publish.push import push_run


@dataclass(frozen=True)
class FoundRun:
    name: str
    run_dir: Path
    onnx_dir: Path | None


@dataclass(frozen=True)
class Published:
    name: str
    repo_id: str
    revision: str  # the commit to pin
    sha256: str  # of model.safetensors
    url: str
    onnx: bool
    metrics: HeadlineMetrics | None = None

    @property
    def pin(self) -> HubWeights:
        return HubWeights(self.repo_id, self.revision, self.sha256, self.metrics)


def _is_run(path: Path) -> bool:
    return all((path / f).is_file() for f in (names.CONFIG_FILE, names.MODEL_FILE, names.METRICS_FILE))


def _run_name(run_dir: Path) -> str | None:
    try:
        config = read_json(run_dir / names.CONFIG_FILE, remedy="")
    except CorruptFileError:
        return None  # not a run to publish; the others still are
    block = config.get(names.CONFIG_BLOCK) if isinstance(config, dict) else None
    return block.get("name") if isinstance(block, dict) else None


def _onnx_dir(run_dir: Path, name: str, exports_dir: Path | None) -> Path | None:
    candidates = [run_dir / layout.ONNX_DIR]
    if exports_dir is not None:
        candidates += [exports_dir / run_dir.name, exports_dir / name, exports_dir / name.replace(".", "_")]
    return next((c for c in candidates if (c / names.REPORT_FILE).is_file()), None)


def _matches(name: str, patterns: list[str]) -> bool:
    # As ltzoo.list_models: a pattern without a tag also matches every tag of a name.
    return any(fnmatch.fnmatch(name, q) for p in patterns for q in ([p] if "." in p else [p, f"{p}.*"]))


def find_runs(
    runs_dir: str | Path, patterns: list[str] | None = None, exports_dir: str | Path | None = None
) -> list[FoundRun]:
    """Trained zoo entries under ``runs_dir`` (the folder itself, its children and grandchildren)."""
    from ltzoo.registry import get_entry

    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise HubError(
            f"runs directory {runs_dir} does not exist; train entries with `ltzoo train NAME --out {runs_dir}/NAME`"
        )
    candidates = [runs_dir, *sorted(runs_dir.glob("*")), *sorted(runs_dir.glob("*/*"))]
    found: dict[str, FoundRun] = {}
    for run_dir in (c for c in candidates if c.is_dir() and _is_run(c)):
        name = _run_name(run_dir)
        if not name or not _matches(name, patterns or ["*"]):
            continue
        try:
            get_entry(name)  # only zoo entries are published under the zoo's names
        except UnknownModelError:
            continue
        if name in found:
            raise HubError(
                f"two runs of {name}: {found[name].run_dir} and {run_dir}; keep one (or narrow --pattern) so the "
                "published weights are unambiguous"
            )
        found[name] = FoundRun(name, run_dir, _onnx_dir(run_dir, name, Path(exports_dir) if exports_dir else None))
    return [found[n] for n in sorted(found)]


def publish_zoo(
    runs_dir: str | Path,
    namespace: str,
    patterns: list[str] | None = None,
    *,
    exports_dir: str | Path | None = None,
    private: bool = False,
    create_pr: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
    dry_run: bool = False,
    pins: Path | None = None,
) -> list[Published]:
    """Push every matching trained entry to ``namespace/<zoo name>``; with ``dry_run`` only list what would go.

    ``pins`` is the pins file to record each published entry in (nothing is recorded when None, or for
    pull requests: a PR's commit is not what ``main`` serves).
    """
    runs = find_runs(runs_dir, patterns, exports_dir)
    if not runs:
        raise HubError(f"no trained zoo entries matching {patterns or ['*']} under {runs_dir}")
    published = []
    for run in runs:
        repo_id = f"{namespace}/{run.name}"
        if dry_run:
            published.append(Published(run.name, repo_id, "", "", "", run.onnx_dir is not None))
            continue
        try:
            info = push_run(
                run.run_dir,
                repo_id,
                onnx_dir=run.onnx_dir,
                private=private,
                create_pr=create_pr,
                endpoint=endpoint,
                token=token,
            )
        except LtzooError as exc:
            done = ", ".join(p.name for p in published) or "none"
            raise HubError(f"publishing {run.name} failed: {exc} (already published: {done})") from None
        sha = sha256_file(run.run_dir / names.MODEL_FILE)  # push_run checked it against config.json
        headline = HeadlineMetrics.from_split(HEADLINE_SPLIT, read_metrics(run.run_dir)[HEADLINE_SPLIT])
        item = Published(run.name, repo_id, info.oid, sha, str(info.pr_url or info), run.onnx_dir is not None, headline)
        published.append(item)
        if pins is not None and not create_pr:
            write_pins(Path(pins), {item.name: item.pin})
    return published


def as_json(published: list[Published]) -> str:
    return json.dumps([asdict(p) for p in published], indent=2)
