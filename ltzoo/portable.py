"""Nothing local leaves the machine: the portable form of what runs and exports record, and the last check.

A run's own files describe this machine (where its data is, which local run ``--init`` started from),
which is what ``ltzoo eval RUN`` and ``ltzoo export`` need there. What leaves the machine (a pushed
``config.json`` and card, ``export_report.json``, ONNX ``metadata_props``) carries the portable form
instead: a data source by its folder's name (:meth:`~ltzoo.data.sources.SourceSpec.portable_name`,
rebuilt elsewhere with ``--data-root``), a local model by its folder's name. Two checks run before a push:
:func:`machine_paths_in` walks every string of what is published (config, card, export report, ONNX metadata)
for any absolute path that lies on this machine, wherever it sits, and names its key; :func:`local_paths_in`
then looks for this machine's known folders in every byte about to be published.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ltzoo.data.sources import SourceSpec, is_source_name, portable_source_name
from ltzoo.names import CONFIG_BLOCK, LOCAL_PREFIX
from ltzoo.source import parse_source

_CHUNK = 8 << 20


def _local_model_path(source: str) -> Path | None:
    """The folder of a run source (``local-dir:PATH`` or a path), None for ``hf-hub:...`` and zoo names. Only
    classified, not checked: a recorded ``--init`` run may have been moved since."""
    parsed = parse_source(source, must_exist=False)
    return parsed.path if parsed.kind == "local" else None


def portable_model_source(source: str) -> str:
    """``hf-hub:...`` and zoo names as they are; a local run folder as ``local-dir:<folder name>``."""
    path = _local_model_path(source)
    return source if path is None else LOCAL_PREFIX + (path.name or "run")


def portable_dataset(name: str | None) -> str | None:
    """A dataset name fit to publish: a user's source by its folder's name; zoo datasets as they are."""
    return None if name is None else portable_source_name(name)


def portable_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a run's ``config.json`` fit to publish: every data source by folder name, the data folder
    and a local ``--init`` parent by name."""
    portable = _map_strings(copy.deepcopy(dict(config)), lambda s: portable_source_name(s) if is_source_name(s) else s)
    lt = portable.get(CONFIG_BLOCK)
    if isinstance(lt, dict):
        source = lt.get("source")
        if isinstance(source, dict):  # where the data was read: path (own data), files (Fashion-MNIST, CIFAR), root
            for key, value in source.items():
                if isinstance(value, str) and Path(value).is_absolute():
                    source[key] = Path(value).name
        parent = lt.get("parent")
        if isinstance(parent, dict) and isinstance(parent.get("source"), str):
            parent["source"] = portable_model_source(parent["source"])
    return portable


def _map_strings(obj: Any, change: Any) -> Any:
    if isinstance(obj, str):
        return change(obj)
    if isinstance(obj, dict):
        return {key: _map_strings(value, change) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_map_strings(value, change) for value in obj]
    return obj


def recorded_local_folders(config: Mapping[str, Any]) -> list[Path]:
    """The folders of this machine that a run's (local) config names: its data and a local parent run."""
    found: list[Path] = []

    def collect(text: str) -> str:
        if is_source_name(text):
            found.append(SourceSpec.parse(text).path)
        return text

    _map_strings(dict(config), collect)
    lt = config.get(CONFIG_BLOCK) if isinstance(config.get(CONFIG_BLOCK), dict) else {}
    source, parent = lt.get("source"), lt.get("parent")
    if isinstance(source, dict):
        found += [Path(value) for value in source.values() if isinstance(value, str) and Path(value).is_absolute()]
    parent_source = parent.get("source") if isinstance(parent, dict) else None
    parent_path = _local_model_path(parent_source) if isinstance(parent_source, str) else None
    if parent_path is not None:
        found.append(parent_path)
    return found


def machine_needles(folders: Iterable[str | os.PathLike[str]] = ()) -> list[str]:
    """Strings that would give this machine away: its home, temp and current folders and ``$LTZOO_DATA`` as
    prefixes (``/home/me/``), and ``folders`` (a run, its data, its export) as they are and resolved."""
    needles: set[str] = set()
    prefixes = [Path.home(), Path(tempfile.gettempdir()), Path.cwd()]
    if os.environ.get("LTZOO_DATA"):
        prefixes.append(Path(os.environ["LTZOO_DATA"]))
    for prefix in prefixes:
        for form in {str(prefix), str(prefix.resolve())}:
            if form.rstrip("/\\"):  # never "/" (it would match every path)
                needles.add(form.rstrip("/\\") + os.sep)
    for folder in folders:
        path = Path(folder).expanduser()
        for form in {str(path.absolute()), str(path.resolve())}:
            if len(Path(form).parts) > 1:
                needles.add(form.rstrip("/\\"))
    return sorted(needles, key=len, reverse=True)


def local_paths_in(content: bytes | os.PathLike[str], needles: Iterable[str]) -> list[str]:
    """The needles found in ``content`` (bytes, or a file read in chunks so a large graph costs no memory)."""
    encoded = [(needle, needle.encode()) for needle in needles]
    if not encoded:
        return []
    if isinstance(content, bytes):
        return [needle for needle, raw in encoded if raw in content]
    overlap = max(len(raw) for _, raw in encoded) - 1
    found: set[str] = set()
    tail = b""
    with open(content, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            window = tail + chunk
            found.update(needle for needle, raw in encoded if raw in window)
            tail = window[-overlap:] if overlap else b""
    return sorted(found)


# An absolute POSIX path inside any text: a "/" that starts a token (not the "/" of a URL, a ratio such as
# many/few, or a relative path such as runs/ce), followed by at least one path character.
_PATH_CHARS = r"[^\s/'\"`<>()\[\]{},;|]"
_ABSOLUTE_PATH = re.compile(rf"(?<![\w.~:/-])/{_PATH_CHARS}+(?:/{_PATH_CHARS}*)*")


def machine_paths_in_text(text: str) -> list[str]:
    """The absolute paths in ``text`` that lie on this machine: those whose top folder (``/usr``, ``/data``)
    exists here. A path recorded on another machine, or a URL's path, is not one."""
    return [
        match.group() for match in _ABSOLUTE_PATH.finditer(text) if Path("/", Path(match.group()).parts[1]).exists()
    ]


def machine_paths_in(obj: Any, key: str = "") -> list[tuple[str, str]]:
    """``(key, path)`` for every path of this machine in the strings of a JSON-like ``obj``; keys are written
    as ``ltzoo.source.files`` or ``stages[0].notes``, so an error can say where to look."""
    if isinstance(obj, str):
        return [(key, path) for path in machine_paths_in_text(obj)]
    if isinstance(obj, Mapping):
        return [
            hit for name, value in obj.items() for hit in machine_paths_in(value, f"{key}.{name}" if key else str(name))
        ]
    if isinstance(obj, (list, tuple)):
        return [hit for index, value in enumerate(obj) for hit in machine_paths_in(value, f"{key}[{index}]")]
    return []
