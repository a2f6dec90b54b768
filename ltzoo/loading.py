"""``ltzoo.load``: one entry point for zoo names, run directories and the Hub (timm's source prefixes)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ltzoo.data.preprocess import DataConfig
from ltzoo.data.spec import dataset_spec
from ltzoo.errors import LtzooError, WeightsNotPublishedError
from ltzoo.models import LTClassifier, ModelSpec, timm_layout
from ltzoo.names import HUB_PREFIX, LOCAL_PREFIX
from ltzoo.registry import get_entry
from ltzoo.runs import load_run


def source_kind(source: str | os.PathLike[str]) -> str:
    """Classify a source as "local-dir", "hf-hub", "run-dir" or "zoo". Like timm, a path- or hub-looking
    string that is no existing directory is never silently taken for a zoo name."""
    text = str(source)
    if text.startswith(LOCAL_PREFIX):
        return "local-dir"
    if text.startswith(HUB_PREFIX):
        return "hf-hub"
    if Path(text).is_dir():
        return "run-dir"
    if any(ch in text for ch in "/\\:"):
        raise LtzooError(
            f"{text!r} is neither a zoo name nor an existing directory. Use 'local-dir:PATH' for a run "
            "directory or 'hf-hub:ORG/REPO[@REVISION]' for the Hub."
        )
    return "zoo"


def resolve_run_dir(source: str | os.PathLike[str]) -> Path:
    """The local run directory behind a source, downloading from the Hub when needed."""
    text, kind = str(source), source_kind(source)
    if kind == "local-dir":
        return Path(text[len(LOCAL_PREFIX):]).expanduser()
    if kind == "run-dir":
        return Path(text)
    from ltzoo.hub.download import download_run

    if kind == "hf-hub":
        from ltzoo.hub.settings import parse_hub_source

        repo_id, revision = parse_hub_source(text)  # a malformed id fails here, naming the expected form
        return download_run(repo_id, revision)
    entry = get_entry(text)
    if entry.weights is None:
        raise WeightsNotPublishedError(
            f"{entry.name} has no published weights yet; {entry.how_to_train()}. "
            f"ltzoo.load({text!r}, pretrained=False) builds the untrained model."
        )
    return download_run(entry.weights.repo_id, entry.weights.revision, expected_sha256=entry.weights.sha256)


def load(source: str | os.PathLike[str], pretrained: bool = True, *, with_config: bool = False) -> Any:
    """Return a ready model in eval mode.

    ``source`` is a zoo name (``"dscl_pbsd_resnet50"``, ``"ce_resnet32.fmnist_lt"``), a run directory,
    ``"local-dir:PATH"`` or ``"hf-hub:ORG/REPO[@rev]"``. ``pretrained=False`` with a zoo name builds the
    untrained inference model of that entry. ``with_config=True`` returns ``(model, config)``.
    """
    kind = source_kind(source)
    if kind == "zoo" and not pretrained:
        model = create_model(str(source))
        model.eval()
        return (model, {}) if with_config else model
    # Hub downloads are hashed against the pinned/recorded sha256 by download_run; hashing them again
    # costs as much as reading the file, so only local runs are hashed here.
    model, config = load_run(resolve_run_dir(source), verify_sha256=kind in ("local-dir", "run-dir"))
    return (model, config) if with_config else model


def create_model(name: str, num_classes: int | None = None, **overrides: Any) -> LTClassifier:
    """Build the untrained inference model of a zoo entry (timm's ``create_model(pretrained=False)``).

    ``model.pretrained_cfg`` carries the entry's data config (the training set's preprocessing)."""
    entry = get_entry(name)
    recipe = entry.recipe()
    info = dataset_spec(recipe.dataset)
    spec = ModelSpec(
        recipe.arch,
        num_classes if num_classes is not None else info.num_classes,
        in_chans=overrides.get("in_chans", info.in_chans),
        head=dict(overrides.get("head", recipe.head)),
    )
    model = spec.build()
    data = DataConfig.from_data_info(replace(info, in_chans=spec.in_chans))
    model.pretrained_cfg = timm_layout.pretrained_cfg(model, spec, data, saved=False, tag=recipe.dataset,
                                                      license_id=entry.license)
    return model
