"""``ltzoo.load``: one entry point for zoo names, run directories and the Hub (timm's source prefixes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ltzoo.data.spec import dataset_spec
from ltzoo.errors import LtzooError, WeightsNotPublishedError
from ltzoo.models import LTClassifier, build_model
from ltzoo.registry import get_entry
from ltzoo.runs import load_run

LOCAL_PREFIX = "local-dir:"
HUB_PREFIX = "hf-hub:"


def resolve_run_dir(source: str | os.PathLike[str]) -> Path:
    """The local run directory behind a source, downloading from the Hub when needed."""
    text = str(source)
    if text.startswith(LOCAL_PREFIX):
        return Path(text[len(LOCAL_PREFIX):]).expanduser()
    if text.startswith(HUB_PREFIX):
        from ltzoo.hub.download import download_run
        from ltzoo.hub.settings import parse_hub_source

        repo_id, revision = parse_hub_source(text)  # a malformed id fails here, naming the expected form
        return download_run(repo_id, revision)
    if Path(text).is_dir():
        return Path(text)
    if any(ch in text for ch in "/\\:"):
        # Like timm: a path- or hub-looking string is never silently taken for a zoo name.
        raise LtzooError(
            f"{text!r} is neither a zoo name nor an existing directory. Use 'local-dir:PATH' for a run "
            "directory or 'hf-hub:ORG/REPO[@REVISION]' for the Hub."
        )
    entry = get_entry(text)
    if entry.weights is None:
        raise WeightsNotPublishedError(
            f"{entry.name} has no published weights yet; {entry.how_to_train()}. "
            f"ltzoo.load({text!r}, pretrained=False) builds the untrained model."
        )
    from ltzoo.hub.download import download_run

    return download_run(entry.weights.repo_id, entry.weights.revision, expected_sha256=entry.weights.sha256)


def load(source: str | os.PathLike[str], pretrained: bool = True, *, with_config: bool = False) -> Any:
    """Return a ready model in eval mode.

    ``source`` is a zoo name (``"dscl_pbsd_resnet50"``, ``"ce_resnet32.fmnist_lt"``), a run directory,
    ``"local-dir:PATH"`` or ``"hf-hub:ORG/REPO[@rev]"``. ``pretrained=False`` with a zoo name builds the
    untrained inference model of that entry. ``with_config=True`` returns ``(model, config)``.
    """
    text = str(source)
    is_zoo_name = not (text.startswith((LOCAL_PREFIX, HUB_PREFIX)) or Path(text).is_dir() or any(c in text for c in "/\\:"))
    if is_zoo_name and not pretrained:
        model = create_model(text)
        model.eval()
        return (model, {}) if with_config else model
    model, config = load_run(resolve_run_dir(source))
    return (model, config) if with_config else model


def create_model(name: str, num_classes: int | None = None, **overrides: Any) -> LTClassifier:
    """Build the untrained inference model of a zoo entry (timm's ``create_model(pretrained=False)``)."""
    entry = get_entry(name)
    recipe = entry.recipe()
    spec = dataset_spec(recipe.dataset)
    return build_model(
        recipe.arch,
        num_classes if num_classes is not None else spec.num_classes,
        in_chans=overrides.get("in_chans", spec.in_chans),
        head=overrides.get("head", recipe.head),
    )
