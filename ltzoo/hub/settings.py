"""Hub settings read from the environment at call time, never at import.

``huggingface_hub`` reads ``HF_ENDPOINT``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` once, when it is
imported (huggingface_hub #2152, #2871). ltzoo reads them on every call and passes them explicitly
(``endpoint=``, ``cache_dir=``, ``local_files_only=``), so setting them after ``import ltzoo`` works.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ENDPOINT = "https://huggingface.co"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubSettings:
    endpoint: str
    token: str | None
    offline: bool
    cache_dir: Path

    def __repr__(self) -> str:  # never show the token, even in a debugger or a log line
        return (
            f"HubSettings(endpoint={self.endpoint!r}, token={'***' if self.token else None}, "
            f"offline={self.offline}, cache_dir={str(self.cache_dir)!r})"
        )


def hub_settings(endpoint: str | None = None, token: str | None = None) -> HubSettings:
    """Explicit arguments win; otherwise
    ``HF_ENDPOINT``/``HF_TOKEN``/``HF_HUB_OFFLINE``/``HF_HUB_CACHE``/``HF_HOME``."""
    env = os.environ
    explicit_cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")  # the second is the legacy name
    if explicit_cache:
        cache = Path(explicit_cache)
    else:
        home = env.get("HF_HOME") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
        )
        cache = Path(home) / "hub"
    return HubSettings(
        endpoint=(endpoint or env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
        token=token or env.get("HF_TOKEN") or None,
        offline=_truthy(env.get("HF_HUB_OFFLINE")) or _truthy(env.get("TRANSFORMERS_OFFLINE")),
        cache_dir=Path(os.path.expandvars(str(cache))).expanduser(),
    )
