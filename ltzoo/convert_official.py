"""Convert checkpoints written by official method code into ltzoo run directories.

Only ``--source dscl`` exists so far (``SY-Xuan/DSCL``; ``reference/methods.md`` 1(d)):

- **stage 1** (``main.py`` -> ``checkpoint.pth.tar``): ``state_dict`` of the DDP-wrapped MoCo model:
  ``module.encoder_q.<torchvision resnet50>`` with the projection head at ``encoder_q.fc.0`` /
  ``encoder_q.fc.2``, the momentum copy ``module.encoder_k.*`` and the buffers ``module.queue``,
  ``module.main_label_queue``, ``module.queue_ptr``. Only ``encoder_q`` minus ``fc`` is kept (as
  ``equal_lincls.py`` does); the classifier is not trained yet, so the converted run carries a head
  with the official stage-2 init N(0, 0.01) and its config says ``head_trained: false``;
- **stage 2** (``equal_lincls.py`` -> ``linear.pth.tar`` / ``linear_best.pth.tar``): a DDP-wrapped
  torchvision resnet50, ``module.conv1.weight`` ... ``module.fc.{weight,bias}``.

timm's resnet50 (ltzoo's backbone) has torchvision's parameter names, so the backbone maps by name.
Pickles are read with ``torch.load(weights_only=True)`` only. The report lists what was mapped,
what is missing, what was dropped as training-only, and what was unexpected; a checkpoint whose
backbone does not match (missing or unexpected keys, wrong shapes) is refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ltzoo.data.spec import dataset_spec
from ltzoo.errors import ConfigMismatchError, CorruptFileError, DataNotFoundError, LtzooError
from ltzoo.models import LTClassifier, build_model
from ltzoo.names import MODEL_FILE
from ltzoo.runs import build_config, save_run
from ltzoo.version import __version__

SOURCES = ("dscl",)
# Parts of the official stage-1 model that only training needs.
DSCL_TRAINING_ONLY = ("encoder_q.fc.", "encoder_k.", "queue", "main_label_queue", "queue_ptr")
HEAD_KEYS = ("head.weight", "head.bias")


@dataclass
class ConversionReport:
    source: str
    checkpoint: str
    stage: int  # 1: representation only, 2: with the trained linear classifier
    mapped: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped_training_only: list[str] = field(default_factory=list)
    wrong_shape: list[str] = field(default_factory=list)
    head_trained: bool = False
    epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, other top-level fields)`` of a ``.pth.tar``; never unpickles arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"checkpoint {path} not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses pickled code; a truncated file fails to unzip
        raise CorruptFileError(
            f"cannot read {path} as a weights-only checkpoint ({str(exc).splitlines()[0]}). ltzoo loads "
            "pickles only with torch.load(weights_only=True); re-save the state_dict from a trusted environment."
        ) from exc
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        state = payload["state_dict"]
        meta = {k: v for k, v in payload.items() if k not in ("state_dict", "optimizer")}
    elif isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        state, meta = payload, {}
    else:
        raise CorruptFileError(f"{path} holds neither a 'state_dict' entry nor a plain state dict")
    return {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}, meta


def _strip_module(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


def map_dscl_state_dict(
    state: dict[str, torch.Tensor], model: LTClassifier
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Rename official DSCL keys to ``LTClassifier`` keys; the report says what did not map."""
    stripped = {_strip_module(k): v for k, v in state.items()}
    stage = 1 if any(k.startswith("encoder_q.") for k in stripped) else 2
    report = ConversionReport(source="dscl", checkpoint="", stage=stage)
    expected = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in stripped.items():
        if stage == 1:
            if key.startswith(DSCL_TRAINING_ONLY):
                report.dropped_training_only.append(key)
                continue
            target = "backbone." + key[len("encoder_q.") :] if key.startswith("encoder_q.") else None
        else:
            target = {"fc.weight": "head.weight", "fc.bias": "head.bias"}.get(key, "backbone." + key)
        if target is None or target not in expected:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(expected[target].shape):
            report.wrong_shape.append(
                f"{key}: checkpoint {tuple(value.shape)} vs ltzoo {tuple(expected[target].shape)}"
            )
        else:
            mapped[target] = value
    report.missing = sorted(set(expected) - set(mapped))
    report.unexpected.sort()
    report.mapped = len(mapped)
    report.head_trained = all(k in mapped for k in HEAD_KEYS)
    return mapped, report


def _problems(report: ConversionReport) -> list[str]:
    allowed_missing = set(HEAD_KEYS) if report.stage == 1 else set()
    problems = []
    if report.wrong_shape:
        problems.append(f"shape mismatches {report.wrong_shape[:5]}")
    bad_missing = [k for k in report.missing if k not in allowed_missing]
    if bad_missing:
        problems.append(f"missing keys {bad_missing[:5]}{' ...' if len(bad_missing) > 5 else ''} ({len(bad_missing)})")
    if report.unexpected:
        problems.append(
            f"unexpected keys {report.unexpected[:5]}{' ...' if len(report.unexpected) > 5 else ''} "
            f"({len(report.unexpected)})"
        )
    return problems


def _num_classes(state: dict[str, torch.Tensor], dataset: str) -> int:
    for key in ("module.fc.weight", "fc.weight"):
        if key in state and state[key].dim() == 2:
            return int(state[key].shape[0])
    return dataset_spec(dataset).num_classes


def _data_fields(
    dataset: str, num_classes: int, data_root: str | None
) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """Label names, DataInfo dict and long-tail summary: from the dataset when its files are given,
    otherwise from ltzoo's static spec (class counts then stay unknown)."""
    if data_root is not None:
        from ltzoo.data import build_dataset

        data = build_dataset(dataset, data_root)
        if data.num_classes != num_classes:
            raise ConfigMismatchError(f"the checkpoint has {num_classes} classes but {dataset} has {data.num_classes}")
        return data.label_names, json.loads(json.dumps(data.info.to_dict())), data.summary()
    spec = dataset_spec(dataset)
    if spec.num_classes != num_classes:
        raise ConfigMismatchError(
            f"the checkpoint has {num_classes} classes but {dataset} has {spec.num_classes}; pass the right --dataset"
        )
    longtail = {
        "dataset": dataset,
        "num_classes": num_classes,
        "class_counts": None,
        "note": "class counts unknown: convert with --data-root to record them",
    }
    return [str(i) for i in range(num_classes)], json.loads(json.dumps(spec.to_dict())), longtail


def convert_dscl(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    dataset: str = "imagenet_lt",
    arch: str = "resnet50",
    data_root: str | None = None,
) -> ConversionReport:
    """Convert an official DSCL stage-1 or stage-2 checkpoint into the run directory ``out_dir``."""
    out_dir = Path(out_dir)
    if (out_dir / MODEL_FILE).exists():
        raise LtzooError(f"{out_dir} already holds a model; choose another --out (nothing was overwritten)")
    state, meta = read_checkpoint(checkpoint)
    num_classes = _num_classes(state, dataset)
    spec = dataset_spec(dataset)
    model = build_model(arch, num_classes, in_chans=spec.in_chans, head={"type": "linear"})
    mapped, report = map_dscl_state_dict(state, model)
    report.checkpoint = str(checkpoint)
    report.epoch = int(meta["epoch"]) if isinstance(meta.get("epoch"), int) else None
    problems = _problems(report)
    if problems:
        raise ConfigMismatchError(
            f"{checkpoint} does not match an official DSCL {arch} checkpoint: {'; '.join(problems)}. "
            "Check --arch and that the file comes from SY-Xuan/DSCL main.py or equal_lincls.py."
        )
    if not report.head_trained:
        # equal_lincls.py's init of the classifier that stage 2 would train.
        torch.nn.init.normal_(model.head.weight, std=0.01)
        torch.nn.init.zeros_(model.head.bias)
        mapped.update({k: v for k, v in model.state_dict().items() if k in HEAD_KEYS})
    model.load_state_dict(mapped, strict=True)
    model.eval()
    label_names, data_info, longtail = _data_fields(dataset, num_classes, data_root)
    method = "dscl_pbsd"  # the checkpoint does not say whether PBSD was on; main.py trains with it
    config = build_config(
        model,
        arch=arch,
        in_chans=spec.in_chans,
        head={"type": "linear"},
        label_names=label_names,
        data_info=data_info,
        longtail=longtail,
        ltzoo_fields={
            "name": f"{method}_{arch}.{dataset}",
            "method": method,
            "arch": arch,
            "converted_from": report.to_dict(),
            "head_trained": report.head_trained,
            "ltzoo_version": __version__,
            "torch_version": torch.__version__,
        },
    )
    save_run(out_dir, model, config, {"converted_from": report.to_dict()})
    return report


def convert_official(
    source: str, checkpoint: str | os.PathLike[str], out_dir: str | os.PathLike[str], **options: Any
) -> ConversionReport:
    """Dispatch on ``source`` (``"dscl"``)."""
    if source != "dscl":
        raise LtzooError(f"unknown --source {source!r}; known sources: {', '.join(SOURCES)}")
    return convert_dscl(checkpoint, out_dir, **options)
