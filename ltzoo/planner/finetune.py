"""``--init MODEL``: start training from a pretrained backbone, with a new head for the new classes.

MODEL is
- an ltzoo model: a run folder, ``local-dir:PATH``, ``hf-hub:ORG/REPO`` pushed by ltzoo, or a zoo name;
- a timm checkpoint: ``hf-hub:ORG/REPO`` as plain timm pushes it (``config.json`` with ``architecture`` and
  ``pretrained_cfg``, then ``model.safetensors``, or ``pytorch_model.bin`` read with ``weights_only=True``), a
  local folder in the same layout, or ``timm:NAME``, a timm model name whose weights timm resolves from the Hub
  (its ``hf_hub_id``: the Hub cache, or ``HF_ENDPOINT``).

In every case the backbone is kept and the head is new, and the data is read as the backbone was trained:
its channels, input size, mean, std, interpolation and crop fraction (:attr:`Parent.preprocessing`). The run
records where it started from (``config.json`` ``ltzoo.parent``; the card names a Hub parent as ``base_model``).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ltzoo.errors import ConfigMismatchError, CorruptFileError, DataNotFoundError, HubError, LtzooError
from ltzoo.models import LTClassifier
from ltzoo.models.heads import build_head
from ltzoo.models.timm_layout import spec_from_config
from ltzoo.names import CONFIG_BLOCK, CONFIG_FILE, MODEL_FILE, TIMM_PREFIX
from ltzoo.source import parse_source

TIMM_PICKLE = "pytorch_model.bin"  # timm's older weights file: read with weights_only=True, never unpickled freely


@dataclass
class Parent:
    """A loaded pretrained model, what its backbone expects of the data, and what a run records about it."""

    model: LTClassifier
    source: str
    arch: str
    in_chans: int
    preprocessing: dict[str, Any]  # input_size (H, W), mean, std, interpolation, crop_pct
    kind: str  # "ltzoo run" or "timm checkpoint"
    num_classes: int
    name: str | None = None
    dataset: str | None = None
    weights_sha256: str | None = None
    hub_repo_id: str | None = None  # where it came from on the Hub (the card's base_model), if it did

    def record(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "name": self.name,
            "dataset": self.dataset,
            "arch": self.arch,
            "num_classes": self.num_classes,
            "weights_sha256": self.weights_sha256,
            "hub_repo_id": self.hub_repo_id,
            "preprocessing": {k: list(v) if isinstance(v, tuple) else v for k, v in self.preprocessing.items()},
            "kept": "backbone (the classifier head was re-initialised for the new classes)",
        }


def _preprocessing(pretrained_cfg: dict[str, Any]) -> dict[str, Any]:
    """What the data must look like for the backbone: from a timm ``pretrained_cfg``."""
    return {
        "input_size": tuple(int(v) for v in pretrained_cfg["input_size"][1:]),
        "mean": tuple(float(v) for v in pretrained_cfg["mean"]),
        "std": tuple(float(v) for v in pretrained_cfg["std"]),
        "interpolation": str(pretrained_cfg.get("interpolation") or "bilinear"),
        "crop_pct": float(pretrained_cfg.get("crop_pct") or 1.0),
    }


def load_parent(source: str) -> Parent:
    """Load ``source`` (see the module docstring) as a :class:`Parent`."""
    source = str(source)
    if source.startswith(TIMM_PREFIX):
        return _timm_name_parent(source)
    parsed = parse_source(source)
    timm_config = _timm_checkpoint_config(parsed)
    if timm_config is not None:
        config, where = timm_config
        return _timm_parent(source, config, where, parsed.repo_id if parsed.kind == "hub" else None, parsed.revision)
    return _ltzoo_parent(source)


def _ltzoo_parent(source: str) -> Parent:
    from ltzoo.loading import load

    model, config = load(source, with_config=True)
    if not config:
        raise LtzooError(
            f"--init {source!r} gave a model without a config; use a trained run, a published zoo model, "
            "hf-hub:ORG/REPO or timm:NAME"
        )
    spec = spec_from_config(config)
    lt = config.get(CONFIG_BLOCK, {})
    cfg = config["pretrained_cfg"]
    return Parent(
        model,
        source,
        spec.arch,
        spec.in_chans,
        _preprocessing(cfg),
        "ltzoo run",
        int(config["num_classes"]),
        lt.get("name"),
        lt.get("dataset"),
        lt.get("weights_sha256"),
        hub_repo_id(source),
    )


def hub_repo_id(source: str) -> str | None:
    """The Hub repo behind an ``ltzoo.load`` source: ``hf-hub:ORG/NAME[@rev]``, or a zoo name's pinned repo."""
    parsed = parse_source(source)
    if parsed.kind == "hub":
        return parsed.repo_id
    if parsed.kind == "zoo":
        from ltzoo.registry import get_entry

        weights = get_entry(parsed.text).weights
        return weights.repo_id if weights else None
    return None


# ----- timm checkpoints ---------------------------------------------------------------------------------------
def _timm_checkpoint_config(parsed: Any) -> tuple[dict[str, Any], Any] | None:
    """``(config, where)`` when the source is a timm checkpoint (a config.json without an ltzoo block), else None;
    ``where`` is the local folder, or the Hub repo's commit."""
    if parsed.kind == "local" and parsed.path is not None and parsed.path.is_dir():
        path = parsed.path / CONFIG_FILE
        config = json.loads(path.read_text()) if path.is_file() else None
        where: Any = parsed.path
    elif parsed.kind == "hub":
        from ltzoo.hub.download import download_file
        from ltzoo.hub.errors import HubFileMissingError
        from ltzoo.hub.settings import hub_settings

        try:
            path = download_file(parsed.repo_id, CONFIG_FILE, parsed.revision, hub_settings())
        except HubFileMissingError:
            raise HubError(
                f"--init {parsed.text}: the repo has no {CONFIG_FILE}, so it is neither an ltzoo nor a timm model"
            ) from None
        config, where = json.loads(path.read_text()), path.parent.name  # the commit: weights from the same one
    else:
        return None
    if not isinstance(config, dict) or CONFIG_BLOCK in config or "architecture" not in config:
        return None
    return config, where


def _timm_parent(source: str, config: dict[str, Any], where: Any, repo_id: str | None, revision: str | None) -> Parent:
    arch = str(config["architecture"])
    if not timm.is_model(arch):
        raise ConfigMismatchError(
            f"--init {source}: the checkpoint's architecture {arch!r} is not a model timm {timm.__version__} knows; "
            "upgrade timm, or start from another checkpoint"
        )
    cfg = dict(config.get("pretrained_cfg") or {})
    if not cfg.get("input_size") or not cfg.get("mean") or not cfg.get("std"):
        raise CorruptFileError(
            f"--init {source}: config.json has no pretrained_cfg with input_size, mean and std, "
            "so the data cannot be prepared as the backbone was trained"
        )
    in_chans = int(cfg["input_size"][0])
    state = _timm_weights(source, where, repo_id)
    # timm's config.json may record the constructor's arguments (model_args, with num_classes and in_chans in them)
    kwargs = dict(config.get("model_args") or {})
    kwargs.setdefault("in_chans", in_chans)
    kwargs.setdefault("num_classes", int(config.get("num_classes", cfg.get("num_classes", 0)) or 0))
    num_classes = int(kwargs["num_classes"])
    model = timm.create_model(arch, pretrained=False, **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ConfigMismatchError(
            f"--init {source}: the weights do not fit timm's {arch} ({str(error).splitlines()[0]})"
        ) from None
    model.reset_classifier(0)  # the backbone alone: the head is new
    placeholder = build_head({"type": "linear"}, int(model.num_features), max(num_classes, 1))
    classifier = LTClassifier(model, placeholder, int(model.num_features), max(num_classes, 1))
    return Parent(
        classifier,
        source,
        arch,
        in_chans,
        _preprocessing(cfg),
        "timm checkpoint",
        num_classes,
        name=cfg.get("architecture") or arch,
        dataset=cfg.get("tag"),
        hub_repo_id=repo_id,
    )


def _timm_weights(source: str, where: Any, repo_id: str | None) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict: model.safetensors, else pytorch_model.bin read with ``weights_only=True``."""
    files = _local_weight_files(where) if repo_id is None else _hub_weight_files(repo_id, where)
    if not files:
        raise DataNotFoundError(f"--init {source}: the checkpoint has no weights ({MODEL_FILE} or {TIMM_PICKLE})")
    path = files[0]
    if path.name == MODEL_FILE:
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise CorruptFileError(f"--init {source}: {MODEL_FILE} cannot be read ({error})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise CorruptFileError(
            f"--init {source}: {TIMM_PICKLE} holds more than tensors, and ltzoo reads pickles only with "
            f"weights_only=True ({str(error).splitlines()[0][:200]}); convert it to safetensors where it came from"
        ) from None


def _local_weight_files(folder: Path) -> list[Path]:
    return [folder / name for name in (MODEL_FILE, TIMM_PICKLE) if (folder / name).is_file()]


def _hub_weight_files(repo_id: str, commit: str) -> list[Path]:
    from ltzoo.hub.download import download_file
    from ltzoo.hub.errors import HubFileMissingError
    from ltzoo.hub.settings import hub_settings

    for name in (MODEL_FILE, TIMM_PICKLE):
        try:
            return [download_file(repo_id, name, commit, hub_settings())]
        except HubFileMissingError:
            continue
    return []


def _timm_name_parent(source: str) -> Parent:
    """``timm:NAME``: the Hub repo that timm names for NAME's pretrained weights."""
    name = source[len(TIMM_PREFIX) :]
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except (RuntimeError, ValueError):
        cfg = None
    if cfg is None or not getattr(cfg, "hf_hub_id", None):
        base = name.split(".")[0]
        known = timm.list_pretrained(f"{base}*")[:5] if timm.is_model(base) else []
        hint = f" Pretrained tags of {base}: {', '.join(known)}." if known else " See timm.list_pretrained()."
        raise LtzooError(f"--init {source}: timm names no Hub weights for {name!r}.{hint}")
    repo = f"hf-hub:{cfg.hf_hub_id}"
    try:
        return load_parent(repo)
    except HubError as error:
        raise HubError(
            f"--init {source} is the Hub repo {cfg.hf_hub_id}, which is not in the Hub cache and could not be "
            f"downloaded ({error}). Download it once where there is network (huggingface-cli download "
            f"{cfg.hf_hub_id}) and copy the cache here, point HF_ENDPOINT at a mirror, or give a local folder"
        ) from None


def init_from_parent(parent: Parent, num_classes: int, in_chans: int, head: dict[str, Any]) -> LTClassifier:
    """The parent's model with its backbone kept and a freshly initialised ``head`` for ``num_classes``."""
    if parent.in_chans != in_chans:
        raise ConfigMismatchError(
            f"--init {parent.source} takes {parent.in_chans}-channel images but the data gives {in_chans}; its "
            "backbone cannot be reused on this data"
        )
    model = parent.model
    model.reset_classifier(num_classes, head=dict(head))
    model.train()
    return model
