"""Files on disk: a file's sha256, atomic writes, and JSON that is read or refused with a clear error.

Every artifact ltzoo writes (weights, configs, checkpoints, ONNX graphs, reports, pins) goes through
:func:`atomic_path`: the content is written next to its destination, flushed to disk, renamed over it,
and the rename itself is flushed (the directory is synced). A crash or a full disk leaves either the
old file or the new one, never half of one, and never a rename that a power cut undoes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ltzoo.errors import CorruptFileError

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file, read in chunks (weights and graphs can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path in ``path``'s folder to write to; on success it replaces ``path`` durably.

    For writers that want a file name (``torch.save``, safetensors, ``onnx.save_model``). On an
    exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp makes 0600 files, and some writers (safetensors) create the file anew: the mode is set
        # after writing, so every artifact gets the same 0644 (a shared filesystem shows it to the team).
        os.chmod(tmp, 0o644)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """``obj`` as indented JSON (keys in their order), atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | os.PathLike[str], *, remedy: str) -> Any:
    """The JSON in ``path``; :class:`CorruptFileError` naming the file and ``remedy`` when it is not valid JSON.

    A missing file raises ``FileNotFoundError`` as usual: callers say in their own words what it means.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{path} is not valid JSON ({exc}); {remedy}") from exc


def _fsync_file(path: Path) -> None:
    # Library writers (torch.save, onnx) close their file without fsync; flush it before the rename.
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); Windows cannot open a folder, and needs no such step."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
