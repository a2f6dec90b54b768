"""How a model is stored so that timm rebuilds it, and how ltzoo reads it back: the one place that
maps between ltzoo's :class:`LTClassifier` and what is on disk, for runs of every format.

Format 2 (this one), ``config.json``:

- ``architecture`` is a timm model name. A timm backbone with a linear head (resnet50,
  resnext50_32x4d, resnet152) is stored as timm's own model, so **plain timm** loads the repo. Every
  other model is one of ltzoo's timm registrations (:mod:`ltzoo.models.timm_models`): ``resnet32``,
  or ``ltzoo_<arch>`` for a timm backbone with an ltzoo head; those load with timm after ``import ltzoo``.
- ``model_args`` holds exactly the keyword arguments of that timm model: ``in_chans``, plus ``head``
  for ltzoo's registrations (their constructor takes it).
- ``pretrained_cfg`` has timm's fields, with ``classifier`` / ``first_conv`` named as in the saved weights.
- ``ltzoo.arch`` / ``ltzoo.head`` say what ltzoo builds; ltzoo reads these, never the timm names.

``model.safetensors`` is the state dict of the model timm builds: timm's key names (``conv1.*``,
``layer*``, ``fc.*``) for plain timm models, :class:`LTClassifier`'s (``backbone.*``, ``head.*``) for
ltzoo's registrations.

Format 1 (runs saved before): ``architecture`` was ltzoo's arch, ``model_args`` held the head, the keys
were always ``backbone.*`` / ``head.*`` and ``pretrained_cfg.crop_mode`` said "center" for every dataset.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import timm
import torch
from torch import nn

from ltzoo.data.preprocess import DataConfig
from ltzoo.data.spec import DataInfo
from ltzoo.models.backbones import REGISTERED_TIMM_ARCHS, TIMM_BACKBONES, is_timm_arch
from ltzoo.models.classifier import LTClassifier, build_model
from ltzoo.names import CONFIG_BLOCK

FORMAT_VERSION = 2
LTZOO_PREFIX = "ltzoo_"  # timm names of ltzoo heads on timm backbones: ltzoo_resnet50, ...
LINEAR_HEAD = {"type": "linear"}
_BACKBONE, _HEAD = "backbone.", "head."


def registered_name(arch: str) -> str:
    """ltzoo's timm name for ``arch`` with any head (a timm backbone's own name is taken by timm)."""
    return LTZOO_PREFIX + arch if is_timm_arch(arch) else arch


@functools.cache
def timm_classifier(arch: str) -> str:
    """The module name of a timm architecture's classifier (``fc``, ``head``, ``head.fc``, ``classifier``): where
    LTClassifier's head goes when the model is stored as a plain timm model."""
    return str(timm.models.get_pretrained_cfg(arch).classifier or "fc") if arch not in TIMM_BACKBONES else "fc"


@dataclass(frozen=True)
class ModelSpec:
    """What ltzoo builds: backbone, class count, input channels and head spec."""

    arch: str
    num_classes: int
    in_chans: int = 3
    head: dict[str, Any] = field(default_factory=lambda: dict(LINEAR_HEAD))

    @property
    def plain_timm(self) -> bool:
        """A timm backbone with a linear head with bias: exactly timm's model, stored as such."""
        return is_timm_arch(self.arch) and self.head in (LINEAR_HEAD, {**LINEAR_HEAD, "bias": True})

    @property
    def timm_architecture(self) -> str:
        return self.arch if self.plain_timm else registered_name(self.arch)

    def timm_model_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"in_chans": self.in_chans}
        if not self.plain_timm:
            args["head"] = dict(self.head)
        return args

    def build(self) -> LTClassifier:
        return build_model(self.arch, self.num_classes, in_chans=self.in_chans, head=dict(self.head))


def format_version(config: dict[str, Any]) -> int:
    return int((config.get(CONFIG_BLOCK) or {}).get("format_version", 1))


def spec_from_config(config: dict[str, Any]) -> ModelSpec:
    """The model of a run's ``config.json``, of any format."""
    lt = config.get(CONFIG_BLOCK) or {}
    args = config.get("model_args") or {}
    return ModelSpec(
        arch=str(lt.get("arch") or config["architecture"]),  # format 1: architecture was ltzoo's arch
        num_classes=int(config["num_classes"]),
        in_chans=int(args.get("in_chans", 3)),
        head=dict(lt.get("head") or args.get("head") or LINEAR_HEAD),  # format 1: model_args held the head
    )


def data_config_from_config(config: dict[str, Any]) -> DataConfig:
    """The eval preprocessing of a run, of any format."""
    data_info = (config.get(CONFIG_BLOCK) or {}).get("data_info")
    if format_version(config) < 2 and isinstance(data_info, dict) and "augment" in data_info:
        # Format 1 wrote crop_mode "center" for every dataset; the evaluator went by the dataset family.
        return DataConfig.from_data_info(DataInfo.from_dict(data_info))
    return DataConfig.from_dict(config.get("pretrained_cfg") or {})


def timm_loading(config: dict[str, Any]) -> str | None:
    """``"timm"`` when plain timm loads the repo, ``"timm+ltzoo"`` when timm does after ``import ltzoo``,
    None when only ``ltzoo.load`` does (a format-1 run of a timm backbone: timm's names were not used)."""
    spec = spec_from_config(config)
    if format_version(config) < 2 and spec.arch in TIMM_BACKBONES:
        return None
    if spec.plain_timm:
        return "timm"
    # ltzoo registers its heads on resnet32 and a few timm backbones only (ltzoo.models.timm_models)
    return "timm+ltzoo" if spec.arch == "resnet32" or spec.arch in REGISTERED_TIMM_ARCHS else None


# ----- weights ---------------------------------------------------------------------------------
def _saved_name(name: str, spec: ModelSpec) -> str:
    """The saved name of a parameter or module of LTClassifier (``backbone.conv1.weight`` -> ``conv1.weight``)."""
    if not spec.plain_timm:
        return name
    if name == _HEAD[:-1] or name.startswith(_HEAD):
        return timm_classifier(spec.arch) + name[len(_HEAD) - 1 :]
    if name.startswith(_BACKBONE):
        return name[len(_BACKBONE) :]
    raise ValueError(f"{name!r} is not part of an LTClassifier's backbone or head")


def saved_state_dict(state_dict: dict[str, torch.Tensor], spec: ModelSpec) -> dict[str, torch.Tensor]:
    """LTClassifier's state dict under the names the saved model uses."""
    return {_saved_name(key, spec): value for key, value in state_dict.items()}


def ltzoo_state_dict(state_dict: dict[str, torch.Tensor], spec: ModelSpec) -> dict[str, torch.Tensor]:
    """A saved state dict (any format) under LTClassifier's names."""
    # ltzoo's own layout (a registration, or a format-1 run) is the one with "backbone." keys: a plain timm
    # model may have "head." keys of its own (a ConvNeXt's head.norm, a ViT's head).
    if not spec.plain_timm or any(key.startswith(_BACKBONE) for key in state_dict):
        return dict(state_dict)
    classifier = timm_classifier(spec.arch) + "."
    return {
        (_HEAD + key[len(classifier) :] if key.startswith(classifier) else _BACKBONE + key): value
        for key, value in state_dict.items()
    }


# ----- pretrained_cfg ----------------------------------------------------------------------------
def model_fields(
    model: LTClassifier, spec: ModelSpec, input_size: tuple[int, int, int], *, saved: bool
) -> dict[str, Any]:
    """timm's ``classifier``, ``first_conv`` and ``pool_size`` of ``model``: named as in the saved weights
    (config.json) or as in the LTClassifier itself (``model.pretrained_cfg``)."""
    first_conv = next(name for name, module in model.named_modules() if isinstance(module, nn.Conv2d))
    reduction = int(model.feature_info[-1]["reduction"])
    names = {"classifier": "head", "first_conv": first_conv}
    if saved:
        names = {key: _saved_name(value, spec) for key, value in names.items()}
    return {"pool_size": [math.ceil(side / reduction) for side in input_size[1:]], **names}


def pretrained_cfg(
    model: LTClassifier,
    spec: ModelSpec,
    data: DataConfig,
    *,
    saved: bool,
    tag: str | None = None,
    license_id: str | None = None,
    label_names: list[str] | None = None,
) -> dict[str, Any]:
    """A timm ``pretrained_cfg``: for config.json (``saved=True``) or for ``model.pretrained_cfg``."""
    cfg: dict[str, Any] = {} if saved else {"architecture": spec.timm_architecture}
    cfg.update(
        {
            "tag": tag,
            **data.to_dict(),
            "num_classes": spec.num_classes,
            **model_fields(model, spec, data.input_size, saved=saved),
        }
    )
    if license_id is not None:
        cfg["license"] = license_id
    if label_names is not None and not saved:  # config.json keeps them top-level, as timm's push does
        cfg["label_names"] = list(label_names)
    return cfg


def module_pretrained_cfg(model: LTClassifier, config: dict[str, Any]) -> dict[str, Any]:
    """``model.pretrained_cfg`` of a model loaded from a run's ``config.json`` (any format)."""
    stored = config.get("pretrained_cfg") or {}
    return pretrained_cfg(
        model,
        spec_from_config(config),
        data_config_from_config(config),
        saved=False,
        tag=stored.get("tag"),
        license_id=stored.get("license"),
        label_names=config.get("label_names"),
    )
