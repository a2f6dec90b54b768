"""``ltzoo.load``: one entry point for zoo names, run directories and the Hub (timm's source prefixes)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ltzoo.data.preprocess import DataConfig
from ltzoo.data.spec import dataset_spec
from ltzoo.errors import WeightsNotPublishedError
from ltzoo.models import LTClassifier, ModelSpec, timm_layout
from ltzoo.registry import get_entry
from ltzoo.runs import load_run
from ltzoo.source import Source, parse_source


def resolve_run_dir(source: Source) -> Path:
    """The local run directory behind a parsed source, downloading from the Hub when needed."""
    if source.kind == "local":
        return source.path
    from ltzoo.hub.download import download_run

    if source.kind == "hub":
        return download_run(source.repo_id, source.revision)
    entry = get_entry(source.text)
    if entry.weights is None:
        raise WeightsNotPublishedError(
            f"{entry.name} has no published weights yet; {entry.how_to_train()}. "
            f"ltzoo.load({source.text!r}, pretrained=False) builds the untrained model."
        )
    return download_run(entry.weights.repo_id, entry.weights.revision, expected_sha256=entry.weights.sha256)


def load(source: str | os.PathLike[str], pretrained: bool = True, *, with_config: bool = False) -> Any:
    """Return a ready model in eval mode.

    ``source`` is a zoo name (``"dscl_pbsd_resnet50"``, ``"ce_resnet32.fmnist_lt"``), a run directory,
    ``"local-dir:PATH"`` or ``"hf-hub:ORG/REPO[@rev]"`` (see :func:`ltzoo.source.parse_source`).
    ``pretrained=False`` with a zoo name builds the untrained inference model of that entry.
    ``with_config=True`` returns ``(model, config)``.
    """
    parsed = parse_source(source)
    if parsed.kind == "zoo" and not pretrained:
        model = create_model(parsed.text)
        model.eval()
        return (model, {}) if with_config else model
    # Hub downloads are hashed against the pinned/recorded sha256 by download_run; hashing them again
    # costs as much as reading the file, so only local runs are hashed here.
    model, config = load_run(resolve_run_dir(parsed), verify_sha256=parsed.kind == "local")
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
    model.pretrained_cfg = timm_layout.pretrained_cfg(
        model, spec, data, saved=False, tag=recipe.dataset, license_id=entry.license
    )
    return model
