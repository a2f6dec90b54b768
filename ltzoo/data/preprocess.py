"""A model's data config: the eval preprocessing it expects, in timm's field names.

The same record is written into ``config.json``'s ``pretrained_cfg`` (where timm's
``resolve_model_data_config`` reads it), set as ``model.pretrained_cfg`` by ``ltzoo.load``, written
into an exported graph's ``metadata_props``, and turned into the one eval transform
(:func:`ltzoo.data.transforms.eval_transform`) that the evaluator, the export gate and ``ltzoo predict``
all use.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ltzoo.data.spec import DataInfo
from ltzoo.errors import ConfigMismatchError

# timm's crop modes that ltzoo uses: "center" resizes the shorter side to size / crop_pct and crops the
# centre; "squash" resizes both sides (aspect ratio not kept, nothing cut away at crop_pct 1).
CROP_MODES = ("center", "squash")
# Augmentation families whose eval pipeline keeps the aspect ratio (see DataConfig.from_data_info).
_CENTER_CROP_FAMILIES = ("imagenet", "fmnist", "cifar")


@dataclass(frozen=True)
class DataConfig:
    """What ``timm.data.resolve_model_data_config`` returns, as a typed record."""

    input_size: tuple[int, int, int]  # (C, H, W) of the network input
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    crop_mode: str = "center"

    def __post_init__(self) -> None:
        if self.crop_mode not in CROP_MODES:
            raise ConfigMismatchError(
                f"crop_mode {self.crop_mode!r} is not supported; ltzoo models use one of {CROP_MODES}"
            )
        if len(self.input_size) != 3 or len(self.mean) != self.input_size[0] or len(self.std) != self.input_size[0]:
            raise ConfigMismatchError(
                f"data config input_size {self.input_size} (C, H, W) needs C values of mean and std, got "
                f"{len(self.mean)} and {len(self.std)}: the config is corrupt, re-save the run"
            )

    @property
    def in_chans(self) -> int:
        return self.input_size[0]

    @property
    def image_mode(self) -> str:
        """The PIL mode images are converted to before the transform (as the dataset loaders do)."""
        return "L" if self.in_chans == 1 else "RGB"

    def to_dict(self) -> dict[str, Any]:
        """timm's keys, JSON-ready (lists, not tuples)."""
        return {
            "input_size": list(self.input_size),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataConfig:
        """From a ``pretrained_cfg`` or a timm data config (extra keys are ignored)."""
        missing = [key for key in ("input_size", "mean", "std") if values.get(key) is None]
        if missing:
            raise ConfigMismatchError(
                f"the model's pretrained_cfg lacks {missing}, so its preprocessing is unknown; re-save the run "
                "with the current ltzoo, or load it with ltzoo.load / ltzoo.create_model"
            )
        optional = {f.name for f in fields(cls)} - {"input_size", "mean", "std"}
        return cls(
            input_size=tuple(int(v) for v in values["input_size"]),  # type: ignore[arg-type]
            mean=tuple(float(v) for v in values["mean"]),
            std=tuple(float(v) for v in values["std"]),
            **{key: values[key] for key in optional if values.get(key) is not None},
        )

    @classmethod
    def from_data_info(cls, info: DataInfo) -> DataConfig:
        """The eval preprocessing of a dataset family: in-memory fmnist/CIFAR images are already at the
        input size (the centre crop of a same-size image is the image) and ImageNet-style sets resize the
        shorter side then crop; user images of any size are squashed so nothing at the border is lost."""
        height, width = info.input_size
        return cls(
            input_size=(int(info.in_chans), int(height), int(width)),
            mean=tuple(float(v) for v in info.mean),
            std=tuple(float(v) for v in info.std),
            interpolation=info.interpolation,
            crop_pct=float(info.crop_pct),
            crop_mode="center" if info.augment in _CENTER_CROP_FAMILIES else "squash",
        )
