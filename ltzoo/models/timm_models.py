"""ltzoo's models as timm models, registered with ``timm.models.register_model`` when ltzoo is imported.

So ``import ltzoo; timm.create_model("hf-hub:ORG/REPO", pretrained=True)`` rebuilds every repo ltzoo
pushes: the CIFAR ResNet-32, and the cosine / ETF / logit-adjusted heads on any backbone (a timm backbone
with a linear head needs no registration: it is timm's own model, see :mod:`ltzoo.models.timm_layout`).

Names: ``resnet32``, and ``ltzoo_<arch>`` for the timm backbones (their own names are timm's). Each
builds an :class:`LTClassifier` (keys ``backbone.*`` / ``head.*``) from timm's ``num_classes`` and
``in_chans`` and ltzoo's ``head`` spec, through timm's ``build_model_with_cfg``: pretrained loading,
``num_classes=`` / ``in_chans=`` adaptation and ``features_only=True`` work as for timm's models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import timm
import torch
from timm.models import build_model_with_cfg, register_model

from ltzoo.data.preprocess import DataConfig
from ltzoo.data.spec import dataset_spec
from ltzoo.models.backbones import BACKBONES, REGISTERED_TIMM_ARCHS
from ltzoo.models.classifier import LTClassifier, build_model
from ltzoo.models.timm_layout import registered_name

__all__: list[str] = []  # register_model appends the names


def _default_cfg(arch: str) -> dict[str, Any]:
    """What timm uses for a model built without a checkpoint: CIFAR-10 for ResNet-32, ImageNet otherwise."""
    cifar = arch == "resnet32"
    data = DataConfig.from_data_info(dataset_spec("cifar10_lt" if cifar else "imagenet_lt"))
    first_conv = "stem.0" if cifar else (timm.models.get_pretrained_cfg(arch).first_conv or "conv1")
    return {
        **data.to_dict(),
        "num_classes": 10 if cifar else 1000,
        "first_conv": f"backbone.{first_conv}",
        "classifier": "head",
        "pool_size": (8, 8) if cifar else (7, 7),
        "license": "apache-2.0",
    }


# Read by register_model: the default pretrained_cfg of each registered name.
REGISTERED = ("resnet32", *REGISTERED_TIMM_ARCHS)
default_cfgs = {registered_name(arch): _default_cfg(arch) for arch in REGISTERED}


def _constructor(arch: str) -> Callable[..., LTClassifier]:
    def construct(
        num_classes: int,
        in_chans: int = 3,
        head: dict[str, Any] | None = None,
        global_pool: str = "avg",
        **unsupported: Any,
    ) -> LTClassifier:
        if unsupported or global_pool != "avg":
            given = sorted(unsupported) + ([] if global_pool == "avg" else ["global_pool"])
            raise TypeError(
                f"{registered_name(arch)} takes num_classes, in_chans and head (an ltzoo head spec, e.g. "
                f"{{'type': 'cosine'}}); it always average-pools and has no option {given}"
            )
        return build_model(arch, num_classes, in_chans=in_chans, head=head)

    return construct


def _drop_mismatched_head(state_dict: dict[str, torch.Tensor], model: LTClassifier) -> dict[str, torch.Tensor]:
    """timm drops the classifier's weight and bias when ``num_classes`` changes; ltzoo's heads can hold more
    (an ETF matrix, a logit prior, a wrapped base head), which is dropped here once its shape no longer fits.
    Anything else that does not fit is left for timm's strict load to report."""
    expected = model.state_dict()
    return {
        key: value
        for key, value in state_dict.items()
        if not (key.startswith("head.") and (key not in expected or expected[key].shape != value.shape))
    }


def _register(arch: str) -> None:
    name = registered_name(arch)
    # forward_intermediates of a ResNet: the stem, then each stage; other timm layouts: timm's own default
    levels = 4 if arch == "resnet32" else 5
    feature_cfg: dict[str, Any] = {"feature_cls": "getter"}
    if arch == "resnet32" or arch in BACKBONES or arch.startswith(("resnet", "resnext")):
        feature_cfg["out_indices"] = tuple(range(levels))

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> LTClassifier:
        return build_model_with_cfg(
            _constructor(arch),
            name,
            pretrained,
            pretrained_filter_fn=_drop_mismatched_head,
            feature_cfg=feature_cfg,
            **kwargs,
        )

    entrypoint.__name__ = entrypoint.__qualname__ = name  # register_model registers the function's name
    entrypoint.__doc__ = f"ltzoo's {arch} classifier with any ltzoo head (``head={{'type': ...}}``)."
    register_model(entrypoint)


for _arch in REGISTERED:
    _register(_arch)
