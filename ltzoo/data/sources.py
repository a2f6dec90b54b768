"""A user's own long-tailed dataset as an :class:`~ltzoo.data.LTDataset`: ``imagefolder:PATH`` or ``splits:ROOT``.

The source string is the dataset's name everywhere (``config.json``'s ``ltzoo.dataset``, the export
metadata), so ``build_dataset(name)`` rebuilds exactly the dataset a run was trained on for ``ltzoo
eval`` and ``export/to_onnx.py --verify dataset``. Options that change the dataset are part of the name
(canonical order, defaults left out)::

    imagefolder:/data/defects?size=32x32&chans=1&shots=terciles&skip_bad=1

- ``size=HxW``: network input size (default 32x32; ``ltzoo train`` sets it for the architecture);
- ``chans=1|3``: channels fed to the network (default: 1 if every training image is grayscale);
- ``mean=..`` / ``std=..``: normalisation, comma-separated (default: ImageNet's, averaged for 1 channel);
- ``shots=MANY,FEW`` (many > MANY, few < FEW training images) or ``shots=terciles`` (default 100,20);
- ``skip_bad=1``: skip unreadable images (counted) instead of failing.

Class counts, the imbalance factor and the shot split come from the training split. Without a val
split, a balanced one is held out from train (:mod:`ltzoo.data.holdout`) and the run says so. Without a
test split the run has no test results (never a copy of val).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ltzoo.data.datasets import FileImageDataset, LTDataset, index_sha256
from ltzoo.data.holdout import hold_out, holdout_sizes
from ltzoo.data.imagecheck import channels_from_modes, scan_images
from ltzoo.data.layouts import Item, LayoutIndex, read_layout
from ltzoo.data.longtail import DEFAULT_FEW_THRESHOLD, DEFAULT_MANY_THRESHOLD, shot_split
from ltzoo.data.spec import IMAGENET_MEAN, IMAGENET_STD, DataInfo
from ltzoo.errors import BadDataError, BadHyperParameterError, DataNotFoundError

log = logging.getLogger("ltzoo.data")

SOURCE_KINDS = ("imagefolder", "splits")
DEFAULT_INPUT_SIZE = (32, 32)
DEFAULT_SHOTS = "absolute"
# One channel: the mean of ImageNet's three (what a grayscale copy of an RGB ImageNet image averages to).
GRAY_MEAN = (round(sum(IMAGENET_MEAN) / 3, 4),)
GRAY_STD = (round(sum(IMAGENET_STD) / 3, 4),)
OPTION_KEYS = ("size", "chans", "mean", "std", "shots", "skip_bad", "interp", "crop")
# Resize interpolations a checkpoint's pretrained_cfg may name (torchvision's InterpolationMode values).
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "nearest-exact", "lanczos", "box", "hamming")


def default_normalisation(in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return (GRAY_MEAN, GRAY_STD) if in_chans == 1 else (IMAGENET_MEAN, IMAGENET_STD)


def is_source_name(name: str) -> bool:
    """Whether ``name`` is a user data source (``imagefolder:...`` / ``splits:...``) rather than a zoo dataset."""
    return any(str(name).startswith(f"{kind}:") for kind in SOURCE_KINDS)


def parse_shot_thresholds(text: str) -> str:
    """``--shot-thresholds`` text -> canonical ``"absolute"``, ``"terciles"`` or ``"MANY,FEW"``."""
    value = text.strip().lower()
    if value in ("absolute", "terciles"):
        return value
    parts = value.split(",")
    try:
        many, few = (int(p) for p in parts)
    except ValueError:
        raise BadHyperParameterError(
            f"--shot-thresholds {text!r}: expected MANY,FEW (integers: many > MANY, few < FEW training images; "
            f"default {DEFAULT_MANY_THRESHOLD},{DEFAULT_FEW_THRESHOLD}) or 'terciles' (classes ranked by count, "
            "in thirds)"
        ) from None
    if few < 0 or few > many:
        raise BadHyperParameterError(f"--shot-thresholds {text!r}: need 0 <= FEW <= MANY")
    return DEFAULT_SHOTS if (many, few) == (DEFAULT_MANY_THRESHOLD, DEFAULT_FEW_THRESHOLD) else f"{many},{few}"


def _floats(key: str, text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise BadHyperParameterError(f"data source option {key}={text!r}: expected comma-separated numbers") from None
    return values


@dataclass(frozen=True)
class SourceSpec:
    """A parsed data source: where the files are and the options that shape the dataset."""

    kind: str
    path: Path
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    in_chans: int | None = None  # None: from the training images
    mean: tuple[float, ...] | None = None  # None: from in_chans
    std: tuple[float, ...] | None = None
    shots: str = DEFAULT_SHOTS
    skip_bad: bool = False
    # How images are resized, and the crop fraction: a pretrained backbone's own (``--init``), else bilinear, 1.0.
    interpolation: str = "bilinear"
    crop_pct: float = 1.0

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        kind, sep, rest = str(text).partition(":")
        if not sep or kind not in SOURCE_KINDS:
            raise BadHyperParameterError(
                f"data source {text!r}: use imagefolder:PATH (train/, val/, optionally test/ with one folder per "
                "class) or splits:ROOT (*_train.txt, *_val.txt, *_test.txt with 'relative/path label' lines)"
            )
        path_text, _, query = rest.partition("?")
        if not path_text:
            raise BadHyperParameterError(f"data source {text!r} names no path: {kind}:PATH")
        options: dict[str, str] = {}
        for pair in filter(None, query.split("&")):
            key, eq, value = pair.partition("=")
            if not eq or key not in OPTION_KEYS:
                raise BadHyperParameterError(
                    f"data source {text!r}: unknown option {pair!r}; known: {', '.join(OPTION_KEYS)}"
                )
            options[key] = value
        spec = cls(kind, Path(path_text).expanduser().resolve())
        changes: dict[str, Any] = {}
        if "size" in options:
            try:
                height, width = (int(v) for v in options["size"].lower().split("x"))
            except ValueError:
                raise BadHyperParameterError(
                    f"data source option size={options['size']!r}: expected HxW, e.g. 32x32"
                ) from None
            changes["input_size"] = (height, width)
        if "chans" in options:
            if options["chans"] not in ("1", "3"):
                raise BadHyperParameterError(f"data source option chans={options['chans']!r}: use 1 or 3")
            changes["in_chans"] = int(options["chans"])
        if "mean" in options:
            changes["mean"] = _floats("mean", options["mean"])
        if "std" in options:
            changes["std"] = _floats("std", options["std"])
        if "shots" in options:
            changes["shots"] = parse_shot_thresholds(options["shots"])
        if "skip_bad" in options:
            changes["skip_bad"] = options["skip_bad"] in ("1", "true", "yes")
        if "interp" in options:
            changes["interpolation"] = options["interp"]
        if "crop" in options:
            changes["crop_pct"] = _floats("crop", options["crop"])[0]
        spec = replace(spec, **changes)
        spec.validate()
        return spec

    def validate(self) -> None:
        if min(self.input_size) < 8:
            raise BadHyperParameterError(f"input size {self.input_size} is too small; use at least 8x8")
        if self.in_chans not in (None, 1, 3):
            raise BadHyperParameterError(f"chans must be 1 or 3, got {self.in_chans}")
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is not None and (self.in_chans is None or len(values) != self.in_chans):
                raise BadHyperParameterError(f"{key}={values} needs chans set and one value per channel")
        if self.std is not None and min(self.std) <= 0:
            raise BadHyperParameterError(f"std must be > 0, got {self.std}")
        parse_shot_thresholds(self.shots)
        if self.interpolation not in INTERPOLATIONS:
            raise BadHyperParameterError(f"interp={self.interpolation!r}: use one of {list(INTERPOLATIONS)}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise BadHyperParameterError(f"crop={self.crop_pct}: the crop fraction must be in (0, 1]")

    @property
    def name(self) -> str:
        """The canonical source string (stored as the dataset name of every run on this data, on this machine)."""
        return f"{self.kind}:{self.path}" + self._options()

    @property
    def portable_name(self) -> str:
        """The source by its folder's name, with the same options (``imagefolder:defects?chans=1``): what
        leaves the machine (a pushed config, an export report, ONNX metadata) instead of the local path.
        Elsewhere it is rebuilt with ``--data-root`` pointing at that folder's copy."""
        return f"{self.kind}:{self.display_name}" + self._options()

    def _options(self) -> str:
        options = []
        if self.input_size != DEFAULT_INPUT_SIZE:
            options.append(f"size={self.input_size[0]}x{self.input_size[1]}")
        if self.in_chans is not None:
            options.append(f"chans={self.in_chans}")
        default_mean, default_std = default_normalisation(self.in_chans or 3)
        if self.mean is not None and tuple(self.mean) != default_mean:
            options.append("mean=" + ",".join(f"{v:g}" for v in self.mean))
        if self.std is not None and tuple(self.std) != default_std:
            options.append("std=" + ",".join(f"{v:g}" for v in self.std))
        if self.shots != DEFAULT_SHOTS:
            options.append(f"shots={self.shots}")
        if self.skip_bad:
            options.append("skip_bad=1")
        if self.interpolation != "bilinear":
            options.append(f"interp={self.interpolation}")
        if self.crop_pct != 1.0:
            options.append(f"crop={self.crop_pct:g}")
        return "?" + "&".join(options) if options else ""

    @property
    def display_name(self) -> str:
        """A short name for the dataset: its folder's name."""
        return self.path.name or "data"


def display_name(name: str) -> str:
    """``"defects"`` for ``"imagefolder:/data/defects?..."``; other names unchanged."""
    return SourceSpec.parse(name).display_name if is_source_name(name) else name


def portable_source_name(name: str) -> str:
    """``"imagefolder:defects?chans=1"`` for ``"imagefolder:/data/defects?chans=1"``; zoo dataset names unchanged."""
    return SourceSpec.parse(name).portable_name if is_source_name(name) else name


# ----- building --------------------------------------------------------------------------------------
def _shot_split(counts: list[int], shots: str) -> Any:
    if shots == "terciles":
        return shot_split(counts, rule="terciles")
    if shots == DEFAULT_SHOTS:
        return shot_split(counts)
    many, few = (int(v) for v in shots.split(","))
    return shot_split(counts, many, few)


def _held_out_val(index: LayoutIndex, train: list[Item]) -> tuple[list[Item], list[Item], dict[str, Any]]:
    labels = [item.label for item in train]
    train_idx, val_idx = hold_out(labels, len(index.classes))
    counts = [labels.count(c) for c in range(len(index.classes))]
    sizes = holdout_sizes(counts)
    note = {
        "held_out_from_train": True,
        "per_class": sizes,
        "rule": "about 10% of train, the same number per class where counts allow (at most 1/5 of a class, none "
        "from classes under 3 images), seeded draw",
    }
    log.warning(
        "%s has no val split: held out %d training images as a balanced val split (%s per class); "
        "add a val split to choose it yourself",
        index.root,
        len(val_idx),
        sizes,
    )
    return [train[i] for i in train_idx], [train[i] for i in val_idx], note


def build_source_dataset(source: str | SourceSpec, root: str | os.PathLike[str] | None = None) -> LTDataset:
    """Build the :class:`LTDataset` of a user source; ``root`` replaces its path (data moved since training)."""
    spec = source if isinstance(source, SourceSpec) else SourceSpec.parse(source)
    if root is not None:
        spec = replace(spec, path=Path(root).expanduser().resolve())
    try:
        index = read_layout(spec.kind, spec.path)
    except DataNotFoundError as error:
        if root is not None:
            raise
        # A run from another machine names its data by folder only (SourceSpec.portable_name).
        raise DataNotFoundError(
            f"{error}. If the files are elsewhere (a run pushed from another machine names its data by folder: "
            f"{spec.display_name!r}), pass --data-root with where they are now"
        ) from None
    if len(index.classes) < 2:
        raise BadDataError(f"{spec.path} has {len(index.classes)} class; long-tailed recognition needs at least 2")
    scan = scan_images(index.root, index.items, spec.skip_bad)
    items = scan.items
    emptied = [c for c in range(len(index.classes)) if not any(i.label == c for i in items["train"])]
    if emptied:
        raise BadDataError(
            f"class {index.classes[emptied[0]]!r} has no readable training image left after --skip-bad-images "
            f"(classes left empty: {[index.classes[c] for c in emptied]}); fix the images or remove the class"
        )

    val_note: dict[str, Any] = {"held_out_from_train": False, "from": index.origin.get("val")}
    if "val" not in items:
        items["train"], items["val"], val_note = _held_out_val(index, items["train"])
        index.origin["val"] = "held out from train"
    if "test" not in items:
        log.warning("%s has no test split: the run reports val only (test results stay empty)", index.root)
        items["test"] = []

    in_chans = spec.in_chans or channels_from_modes(scan.train_modes)
    mode = "L" if in_chans == 1 else "RGB"
    default_mean, default_std = default_normalisation(in_chans)
    info = DataInfo(
        num_classes=len(index.classes),
        in_chans=in_chans,
        input_size=spec.input_size,
        mean=tuple(spec.mean or default_mean),
        std=tuple(spec.std or default_std),
        augment="generic",
        interpolation=spec.interpolation,
        crop_pct=spec.crop_pct,
    )
    splits = {
        s: FileImageDataset(index.root, [i.path for i in items[s]], [i.label for i in items[s]], mode) for s in items
    }
    data = LTDataset(
        name=spec.name,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        label_names=list(index.classes),
        info=info,
        index_sha256=index_sha256(
            {"classes": index.classes, **{s: sorted((i.path, i.label) for i in items[s]) for s in items}}
        ),
        source={
            "kind": spec.kind,
            "path": str(index.root),
            "display_name": spec.display_name,
            "classes_from": index.classes_from,
            "splits_from": {s: index.origin.get(s, "none") for s in ("train", "val", "test")},
            "val": val_note,
            "test": "from " + index.origin["test"] if "test" in index.origin else "none: no test results",
            "train_image_modes": dict(scan.train_modes),
            "in_chans_from": "option" if spec.in_chans else "the training images' modes",
            "skipped_images": scan.skipped_report(),
            "ignored_non_image_files": len(index.ignored_files),
        },
    )
    # LTDataset applies the default rule; a source may ask for another (stored in every result).
    data.shots = _shot_split(data.class_counts, spec.shots)
    _announce(data, spec)
    return data


def _announce(data: LTDataset, spec: SourceSpec) -> None:
    shots = data.shots
    log.info(
        "%s: %d classes, %d/%d/%d train/val/test images, imbalance factor %.1f; many/medium/few %d/%d/%d classes (%s)",
        spec.display_name,
        data.num_classes,
        len(data.train),
        len(data.val),
        len(data.test),  # type: ignore[arg-type]
        data.imbalance_factor,
        len(shots.many),
        len(shots.medium),
        len(shots.few),
        f"rule {shots.rule}: many > {shots.many_threshold}, few < {shots.few_threshold}",
    )
    empty = [group for group in ("many", "medium", "few") if not getattr(shots, group)]
    if empty and shots.rule == "absolute":
        log.info(
            "the absolute thresholds leave the %s group(s) empty for these counts; --shot-thresholds terciles ranks "
            "the classes by count into thirds, --shot-thresholds MANY,FEW sets other thresholds",
            "/".join(empty),
        )
