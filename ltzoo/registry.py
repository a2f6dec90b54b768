"""The zoo registry: ``{method}_{arch}.{tag}`` names, each with a recipe and (maybe) published weights.

Modelled on timm's ``_registry``: a name without a tag means the default tag; ``list_models`` takes
fnmatch patterns; unknown names fail with close-match suggestions. Each recipe module registers its
entries from one table with :func:`register_recipes`; the registry imports them all on first use.
Published weights are data, not code: every lookup attaches the entry's pin from the pins file
(:mod:`ltzoo.pins`), which ``ltzoo publish-zoo`` writes.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ltzoo.errors import UnknownModelError
from ltzoo.pins import HubWeights, load_pins, pins_path
from ltzoo.recipe import Recipe

log = logging.getLogger("ltzoo.registry")
__all__ = ["HubWeights", "ZooEntry", "default_tag", "get_entry", "list_models", "register_recipes", "split_name"]


@dataclass(frozen=True)
class ZooEntry:
    name: str  # "ce_resnet32.fmnist_lt"
    method: str
    arch: str
    tag: str  # the training dataset
    recipe_fn: Callable[[], Recipe] = field(repr=False)
    paper: str = ""
    license: str = "apache-2.0"
    weights: HubWeights | None = None

    @property
    def base_name(self) -> str:
        return self.name.split(".")[0]

    @property
    def published(self) -> bool:
        return self.weights is not None

    def recipe(self) -> Recipe:
        """A fresh copy of the entry's recipe (safe to modify)."""
        return self.recipe_fn()

    def how_to_train(self) -> str:
        slug = self.name.replace(".", "_")
        return (
            f"train them with `ltzoo train {self.name} --out runs/{slug}` and load the run with "
            f"ltzoo.load('local-dir:runs/{slug}')"
        )


_ENTRIES: dict[str, ZooEntry] = {}
_DEFAULT_TAGS: dict[str, str] = {}


def register_recipes(
    method: str, recipes: dict[str, Callable[[], Recipe]], paper: str = "", license: str = "apache-2.0"
) -> list[str]:
    """Register a method's zoo entries from one table ``{"arch.tag": recipe function}``, in the way timm's
    ``default_cfgs`` are one table per model family: ``"resnet32.fmnist_lt"`` becomes ``{method}_resnet32.fmnist_lt``,
    and the first tag listed for an arch is its default tag (what the bare name ``{method}_{arch}`` means).
    Weights are not registered here: they come from the pins file. A name registered twice is an error (the
    second recipe would silently replace the first), as is an arch that already has a default tag."""
    entries: list[ZooEntry] = []
    defaults: dict[str, str] = {}
    for key, recipe_fn in recipes.items():
        arch, dot, tag = key.partition(".")
        if not (arch and dot and tag) or "." in tag:
            raise ValueError(f"recipe table key {key!r} is not 'arch.tag'")
        base = f"{method}_{arch}"
        defaults.setdefault(base, tag)
        entries.append(ZooEntry(f"{base}.{tag}", method, arch, tag, recipe_fn, paper, license))
    taken = sorted(
        {entry.name for entry in entries if entry.name in _ENTRIES}
        | {base for base in defaults if base in _DEFAULT_TAGS}
    )
    if taken:
        raise ValueError(f"zoo names already registered: {', '.join(taken)}; pick another method, arch or tag")
    _ENTRIES.update((entry.name, entry) for entry in entries)
    _DEFAULT_TAGS.update(defaults)
    return [entry.name for entry in entries]


def _ensure_loaded() -> None:
    from ltzoo.submodules import import_submodules

    import_submodules("ltzoo.recipes")


_warned_unknown: set[tuple[str, str]] = set()


def _pinned() -> dict[str, HubWeights]:
    """The current pins (re-read when the file changes), warning once about names the zoo does not have."""
    pins = load_pins()
    for name in sorted(set(pins) - set(_ENTRIES)):
        if (str(pins_path()), name) not in _warned_unknown:
            _warned_unknown.add((str(pins_path()), name))
            log.warning(
                "%s pins %s, which is no zoo entry (renamed or removed?); the pin is ignored", pins_path(), name
            )
    return pins


def _with_pin(entry: ZooEntry, pins: dict[str, HubWeights]) -> ZooEntry:
    return replace(entry, weights=pins.get(entry.name))


def split_name(name: str) -> tuple[str, str | None]:
    base, _, tag = name.partition(".")
    return base, (tag or None)


def get_entry(name: str) -> ZooEntry:
    """Resolve ``base`` (default tag) or ``base.tag``; unknown names raise with suggestions."""
    _ensure_loaded()
    base, tag = split_name(name)
    if tag is None and base in _DEFAULT_TAGS:
        tag = _DEFAULT_TAGS[base]
    full = f"{base}.{tag}"
    if full in _ENTRIES:
        return _with_pin(_ENTRIES[full], _pinned())
    if base in _DEFAULT_TAGS:
        tags = sorted(e.tag for e in _ENTRIES.values() if e.base_name == base)
        raise UnknownModelError(f"{base!r} has no tag {tag!r}; available tags: {', '.join(tags)}")
    candidates = sorted(set(_DEFAULT_TAGS) | set(_ENTRIES))
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownModelError(f"unknown model {name!r}.{hint} See `ltzoo list` for every name.")


def list_models(pattern: str | list[str] = "*", pretrained: bool = False, exclude: str | list[str] = ()) -> list[str]:
    """Zoo names matching fnmatch pattern(s). A pattern without a tag matches every tag of a name.
    ``pretrained=True`` keeps the names with pinned weights (``get_entry(name).weights``)."""
    _ensure_loaded()
    pins = _pinned() if pretrained else {}
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    excludes = [exclude] if isinstance(exclude, str) else list(exclude)

    def expand(p: str) -> list[str]:
        return [p] if "." in p else [p, f"{p}.*"]

    names = []
    for name in _ENTRIES:
        if pretrained and name not in pins:
            continue
        if not any(fnmatch.fnmatch(name, q) for p in patterns for q in expand(p)):
            continue
        if any(fnmatch.fnmatch(name, q) for p in excludes for q in expand(p)):
            continue
        names.append(name)
    return sorted(names)


def default_tag(base: str) -> str | None:
    _ensure_loaded()
    return _DEFAULT_TAGS.get(base)
