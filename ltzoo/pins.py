"""The zoo's published weights as data: ``ltzoo/zoo_pins.json``, written by ``ltzoo publish-zoo``, read by the registry.

One entry per zoo name: the Hub repo, the pinned commit, the sha256 of its ``model.safetensors`` and the
headline top-1 (%) on the test split, all / many / medium / few::

    {
      "format": 1,
      "pins": {
        "ce_resnet32.fmnist_lt": {
          "repo_id": "ltzoo/ce_resnet32.fmnist_lt",
          "revision": "<40-hex commit sha>",
          "sha256": "<64-hex sha256 of model.safetensors>",
          "metrics": {"split": "test", "all": 84.1, "many": 91.2, "medium": 80.3, "few": 63.0}
        }
      }
    }

The file ships inside the package. ``$LTZOO_PINS`` names another pins file to use instead (your own
organisation's zoo, or a test's), read at call time like ``HF_ENDPOINT``; ``publish-zoo --pins`` writes
there. Nobody edits Python to publish weights.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from ltzoo.errors import CorruptFileError

PINS_ENV = "LTZOO_PINS"
PINS_FORMAT = 1
HEADLINE_SPLIT = "test"
GROUPS = ("all", "many", "medium", "few")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class HeadlineMetrics:
    """Top-1 accuracy in % on ``split``; a group is None where the dataset puts no class in it."""

    split: str
    all: float | None
    many: float | None
    medium: float | None
    few: float | None

    @classmethod
    def from_split(cls, split: str, results: dict[str, Any]) -> HeadlineMetrics:
        values = {g: None if results.get(g) is None else round(float(results[g]), 2) for g in GROUPS}
        return cls(split=split, **values)


@dataclass(frozen=True)
class HubWeights:
    """Where an entry's published weights live. ``revision`` is a pinned commit sha."""

    repo_id: str
    revision: str
    sha256: str  # of model.safetensors
    metrics: HeadlineMetrics | None = None


def packaged_pins_path() -> Path:
    """The pins file inside the installed package (a real file: wheels are installed unzipped)."""
    return Path(str(files("ltzoo") / "zoo_pins.json"))


def pins_path() -> Path:
    """``$LTZOO_PINS`` if set, else the packaged file."""
    override = os.environ.get(PINS_ENV)
    return Path(override).expanduser() if override else packaged_pins_path()


_cache: dict[tuple[str, str], dict[str, HubWeights]] = {}


def load_pins(path: Path | None = None) -> dict[str, HubWeights]:
    """The pins of ``path`` (default :func:`pins_path`). The file is small and read on every call (an edit
    or a publish shows at once); parsing it is cached by its text."""
    path = path or pins_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if os.environ.get(PINS_ENV) and path == pins_path():
            raise CorruptFileError(
                f"${PINS_ENV} is {path}, which does not exist; publish with `ltzoo publish-zoo --pins {path}` "
                f"or unset {PINS_ENV} to use the pins that ship with ltzoo"
            ) from None
        return {}
    key = (str(path), text)
    if key not in _cache:
        _cache.clear()
        _cache[key] = parse_pins(text, path)
    return dict(_cache[key])


def parse_pins(text: str, source: Path) -> dict[str, HubWeights]:
    """Check and decode a pins file; every problem names the entry and the fix."""

    def bad(what: str) -> CorruptFileError:
        return CorruptFileError(f"{source}: {what}; re-run `ltzoo publish-zoo` or fix the entry by hand")

    try:
        data = json.loads(text)
    except ValueError as exc:
        raise bad(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != PINS_FORMAT or not isinstance(data.get("pins"), dict):
        raise bad(f'expected {{"format": {PINS_FORMAT}, "pins": {{NAME: PIN, ...}}}}')
    pins = {}
    for name, pin in data["pins"].items():
        if not isinstance(pin, dict):
            raise bad(f"{name}: a pin is an object with repo_id, revision, sha256 and metrics")
        repo_id, revision, sha256 = pin.get("repo_id"), pin.get("revision"), pin.get("sha256")
        if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise bad(f"{name}: repo_id {repo_id!r} is not ORG/NAME")
        if not isinstance(revision, str) or not _COMMIT.match(revision):
            raise bad(f"{name}: revision {revision!r} is not a 40-hex commit sha (a branch name is no pin)")
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            raise bad(f"{name}: sha256 {sha256!r} is not 64 hex digits")
        metrics = pin.get("metrics")
        if metrics is not None:
            values = {g: metrics.get(g) for g in GROUPS} if isinstance(metrics, dict) else None
            if values is None or not all(v is None or isinstance(v, (int, float)) for v in values.values()):
                raise bad(f"{name}: metrics must hold numbers (or null) for {', '.join(GROUPS)}")
            metrics = HeadlineMetrics(split=str(metrics.get("split", HEADLINE_SPLIT)), **values)
        pins[name] = HubWeights(repo_id, revision, sha256, metrics)
    return pins


def write_pins(path: Path, updates: dict[str, HubWeights]) -> Path:
    """Merge ``updates`` into the pins file at ``path`` (created if missing) and write it atomically."""
    from ltzoo.fileio import atomic_write_json

    pins = load_pins(path) if path.exists() else {}
    pins.update(updates)
    atomic_write_json(path, {"format": PINS_FORMAT, "pins": {name: _encode(pins[name]) for name in sorted(pins)}})
    return path


def _encode(pin: HubWeights) -> dict[str, Any]:
    entry = {"repo_id": pin.repo_id, "revision": pin.revision, "sha256": pin.sha256}
    if pin.metrics is not None:
        entry["metrics"] = asdict(pin.metrics)
    return entry
