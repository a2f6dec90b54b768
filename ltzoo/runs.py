"""Run directories: ``model.safetensors`` + ``config.json`` + ``metrics.json``, written atomically.

``config.json`` follows timm's Hub layout (``architecture``, ``num_classes``, ``num_features``,
``label_names``, ``model_args``, ``pretrained_cfg``) plus an ``ltzoo`` block with what ltzoo builds
(arch, head) and the long-tail facts (class counts, shot split, index sha256, recipe, seed, metrics,
weights sha256). Which names the weights and the timm fields use, and how runs saved in the earlier
format are read, is :mod:`ltzoo.models.timm_layout`'s business.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ltzoo.data.preprocess import DataConfig
from ltzoo.data.spec import DataInfo
from ltzoo.errors import ConfigMismatchError, CorruptFileError, DataNotFoundError

# atomic_write_bytes / atomic_write_json are imported from here by the benchmarks (outside the package).
from ltzoo.fileio import atomic_path, atomic_write_bytes, atomic_write_json, read_json, sha256_file  # noqa: F401
from ltzoo.models import LTClassifier, timm_layout
from ltzoo.models.timm_layout import FORMAT_VERSION, ModelSpec, spec_from_config
from ltzoo.names import CONFIG_BLOCK, CONFIG_FILE, METRICS_FILE, MODEL_FILE, WEIGHTS_SHA256_KEY

log = logging.getLogger("ltzoo.runs")


# ----- atomic writes ---------------------------------------------------------------------------
def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_save_state_dict(state_dict: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> str:
    """Save tensors as safetensors atomically; returns the file's sha256."""
    with atomic_path(path) as tmp:
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, str(tmp), metadata={"format": "pt"}
        )
    return sha256_file(path)


# ----- config ----------------------------------------------------------------------------------
def build_config(
    model: LTClassifier,
    *,
    arch: str,
    in_chans: int,
    head: dict[str, Any],
    label_names: list[str],
    data_info: dict[str, Any],
    longtail: dict[str, Any],
    ltzoo_fields: dict[str, Any],
) -> dict[str, Any]:
    """Assemble config.json. ``data_info`` is a DataInfo dict, ``longtail`` an LTDataset.summary()."""
    spec = ModelSpec(arch, model.num_classes, in_chans, dict(head))
    data = DataConfig.from_data_info(DataInfo.from_dict({**data_info, "in_chans": in_chans}))
    return {
        "architecture": spec.timm_architecture,
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        "global_pool": "avg",
        "label_names": label_names,
        "model_args": spec.timm_model_args(),
        "pretrained_cfg": timm_layout.pretrained_cfg(
            model,
            spec,
            data,
            saved=True,
            tag=longtail.get("dataset"),
            license_id=ltzoo_fields.get("license", "apache-2.0"),
        ),
        CONFIG_BLOCK: {
            "format_version": FORMAT_VERSION,
            "num_params": sum(p.numel() for p in model.parameters()),
            "data_info": data_info,
            **longtail,
            **ltzoo_fields,
            # What ltzoo builds (the timm fields above name timm's model); last, so nothing overrides it.
            "arch": arch,
            "head": dict(head),
        },
    }


def read_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise DataNotFoundError(
            f"{path} not found: {run_dir} is not an ltzoo run directory (needs {CONFIG_FILE} and {MODEL_FILE})"
        )
    config = read_json(path, remedy="re-download or re-train the run")
    missing = [k for k in ("architecture", "num_classes", "model_args", "pretrained_cfg") if k not in config]
    if missing:
        raise CorruptFileError(f"{path} lacks {missing}: not an ltzoo/timm config (was the repo pushed by ltzoo?)")
    return config


# ----- save / load -----------------------------------------------------------------------------
def save_run(
    out_dir: str | os.PathLike[str], model: LTClassifier, config: dict[str, Any], metrics: dict[str, Any]
) -> Path:
    """Write weights first (under the saved layout's names), then config (with their sha256), then metrics;
    each file atomically."""
    out_dir = Path(out_dir)
    weights = timm_layout.saved_state_dict(model.state_dict(), spec_from_config(config))
    sha = atomic_save_state_dict(weights, out_dir / MODEL_FILE)
    config = json.loads(json.dumps(config))
    config.setdefault(CONFIG_BLOCK, {})[WEIGHTS_SHA256_KEY] = sha
    for key in ("metrics", "selected"):
        if key in config[CONFIG_BLOCK]:
            config[CONFIG_BLOCK][key] = rounded_floats(config[CONFIG_BLOCK][key])
    atomic_write_json(out_dir / CONFIG_FILE, config)
    atomic_write_json(out_dir / METRICS_FILE, rounded_floats(metrics))
    return out_dir


def rounded_floats(obj: Any, significant: int = 12) -> Any:
    """``obj`` with every float at ``significant`` digits: 0.8999999999999999 is written as 0.9. Twelve digits
    keep every real difference (a top-1 over 10,000 images moves in steps of 0.01) and drop only float noise, so a
    re-evaluation still matches the recorded number to 1e-9."""
    if isinstance(obj, float):
        return float(f"{obj:.{significant}g}") if math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {key: rounded_floats(value, significant) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded_floats(value, significant) for value in obj]
    return obj


def model_from_config(config: dict[str, Any]) -> LTClassifier:
    """The (untrained) LTClassifier that a ``config.json`` of any format describes."""
    return spec_from_config(config).build()


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"weights file {path} not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptFileError(
            f"{path} is not a readable safetensors file ({exc}); it is truncated or corrupt: re-download or re-train"
        ) from exc


def load_weights_strict(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str, assign: bool = False
) -> None:
    """Strict load with a message that lists what differs (never a silent partial load)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if state_dict[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        if wrong_shape:
            parts.append("shape mismatch " + "; ".join(wrong_shape[:5]))
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        raise ConfigMismatchError(
            f"weights in {source} do not match the model in its config.json: {', '.join(parts)}. "
            "The config and weights come from different runs (e.g. wrong num_classes): re-export or re-train."
        )
    model.load_state_dict(state_dict, strict=True, assign=assign)


def load_run(run_dir: str | os.PathLike[str], verify_sha256: bool = True) -> tuple[LTClassifier, dict[str, Any]]:
    """Build the model described by ``config.json`` and load ``model.safetensors`` strictly (eval mode).

    Runs of either format load (see :mod:`ltzoo.models.timm_layout`); the model gets ``pretrained_cfg``
    (timm's fields, named for the LTClassifier) so ``ltzoo.data_config(model)`` knows its preprocessing."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    weights_path = run_dir / MODEL_FILE
    if not weights_path.is_file():
        raise DataNotFoundError(f"{weights_path} not found: the run has no weights (did training finish?)")
    recorded = config.get(CONFIG_BLOCK, {}).get(WEIGHTS_SHA256_KEY)
    if verify_sha256 and recorded and sha256_file(weights_path) != recorded:
        raise CorruptFileError(
            f"{weights_path} does not match the sha256 recorded in config.json; the file was changed or truncated"
        )
    state_dict = timm_layout.ltzoo_state_dict(load_state_dict_file(weights_path), spec_from_config(config))
    # Build on the meta device and adopt the loaded tensors: random initialisation of weights that are
    # overwritten anyway is most of the cost of building a ResNet-50.
    with torch.device("meta"):
        model = model_from_config(config)
    load_weights_strict(model, state_dict, str(weights_path), assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):  # a non-persistent buffer: build for real
        model = model_from_config(config)
        load_weights_strict(model, state_dict, str(weights_path))
    model.pretrained_cfg = timm_layout.module_pretrained_cfg(model, config)
    model.eval()
    return model, config


@dataclass(frozen=True)
class TrainedOn:
    """What a model was trained on, as its config records it: the one rule for "is this the data the model was
    trained on?" (``ltzoo eval``, ``ltzoo calibrate``, the export gate)."""

    label_names: tuple[str, ...]
    class_counts: tuple[int, ...] | None = None
    index_sha256: str | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrainedOn:
        lt = config.get(CONFIG_BLOCK, {})
        labels = config.get("label_names") or [str(i) for i in range(int(config.get("num_classes", 0)))]
        counts = lt.get("class_counts")
        return cls(tuple(labels), tuple(counts) if counts else None, lt.get("index_sha256"))

    def check(self, data: Any) -> None:
        """The same classes in the same order, and the same training counts where recorded, or an error (a class
        folder added or renamed since would score every image against another class mapping); only a warning
        when the split files differ but the classes and counts agree."""
        if list(data.label_names) != list(self.label_names):
            raise ConfigMismatchError(
                f"the data found has classes {list(data.label_names)} but the model was trained on "
                f"{list(self.label_names)}; use the data it was trained on (--data-root points at a moved copy)"
            )
        if self.class_counts is not None and list(data.class_counts) != list(self.class_counts):
            raise ConfigMismatchError(
                f"the data found has training class counts {list(data.class_counts)}, but the model was trained on "
                f"{list(self.class_counts)}: point --data-root at the dataset the model was trained on"
            )
        if self.index_sha256 not in (None, data.index_sha256):
            log.warning(
                "the dataset's files differ from those the model was trained on (index sha256 %s, trained on %s)",
                data.index_sha256[:12],
                self.index_sha256[:12],
            )
