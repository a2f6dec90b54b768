"""Hugging Face Hub: push runs with a model card, download them (cache, offline, sha256), ONNX sessions.

``download_run`` / ``load_onnx_session`` are imported eagerly (the loader needs them); the push side
pulls in matplotlib and Jinja2, so it is imported on first use.
"""

from __future__ import annotations

from typing import Any

from ltzoo.hub.download import download_run, load_onnx_session

_LAZY = {"push_run": "ltzoo.hub.push", "publish_zoo": "ltzoo.hub.publish", "render_card": "ltzoo.hub.card"}

__all__ = ["download_run", "load_onnx_session", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ltzoo.hub' has no attribute {name!r}")
