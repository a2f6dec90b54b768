"""Where a model comes from: the one parser of the sources that ``ltzoo.load``, the CLIs and the ONNX resolver take.

A source is one of three kinds (timm's prefixes):

- ``hub``: ``hf-hub:ORG/NAME[@REVISION]``, a repo pushed by ltzoo;
- ``local``: ``local-dir:PATH`` or a plain path: a run directory, an export folder or an ``.onnx`` file
  (``~`` is expanded in both forms);
- ``zoo``: anything else, a zoo name, which the registry resolves (and refuses with close matches).

A string that looks like a path (a separator, a ``:``, a leading ``~`` or ``.``) is never taken for a
zoo name: when it does not exist the error names the path, instead of the registry answering "unknown
model" about a typo in a folder name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ltzoo.errors import DataNotFoundError, HubError
from ltzoo.names import HUB_PREFIX, LOCAL_PREFIX

SourceKind = Literal["hub", "local", "zoo"]
_PATH_MARKS = ("/", "\\", ":")


@dataclass(frozen=True)
class Source:
    """A parsed source. ``text`` is what was given (for a zoo source, the name); the other fields are those of
    its ``kind``."""

    text: str
    kind: SourceKind
    path: Path | None = None  # local: the path, ``~`` expanded
    repo_id: str | None = None  # hub: ORG/NAME
    revision: str | None = None  # hub: a branch, tag or commit; None for the default branch


def parse_source(text: str | os.PathLike[str], *, must_exist: bool = True) -> Source:
    """Classify and parse a source (see the module docstring).

    Raises :class:`HubError` for a malformed Hub id and, with ``must_exist`` (the default), a
    :class:`DataNotFoundError` naming the path for a local source that does not exist. ``must_exist=False``
    only classifies: for sources recorded earlier (a run's ``--init``), whose folder may be gone since.
    """
    text = str(text)
    if text.startswith(HUB_PREFIX):
        repo_id, revision = _parse_hub_id(text)
        return Source(text, "hub", repo_id=repo_id, revision=revision)
    if text.startswith(LOCAL_PREFIX):
        path = Path(text.removeprefix(LOCAL_PREFIX)).expanduser()
        if must_exist and not path.exists():
            raise DataNotFoundError(
                f"{text!r}: {path} does not exist; give an existing run directory, export folder or .onnx file"
            )
        return Source(text, "local", path=path)
    path = Path(text).expanduser()
    if path.exists():
        return Source(text, "local", path=path)
    if any(mark in text for mark in _PATH_MARKS) or text.startswith(("~", ".")):
        if must_exist:
            raise DataNotFoundError(
                f"{text!r} is neither a zoo name nor an existing path: {path} does not exist. Give an existing run "
                f"directory (or '{LOCAL_PREFIX}PATH'), '{HUB_PREFIX}ORG/NAME[@REVISION]' for the Hub, or a zoo name "
                "from `ltzoo list`."
            )
        return Source(text, "local", path=path)
    return Source(text, "zoo")


def _parse_hub_id(text: str) -> tuple[str, str | None]:
    """``hf-hub:ORG/NAME[@REVISION]`` -> (ORG/NAME, REVISION or None); anything else is refused."""
    repo_id, _, revision = text.removeprefix(HUB_PREFIX).partition("@")
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise HubError(
            f"{text!r} is not a Hub model id; write it as '{HUB_PREFIX}ORG/NAME' or '{HUB_PREFIX}ORG/NAME@REVISION'"
        )
    return repo_id, (revision or None)
