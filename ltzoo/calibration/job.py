"""``ltzoo calibrate SOURCE --out DIR``: a new run whose head has a post-hoc calibration and a deployment prior
folded into its weight and bias.

1. Load the parent (any model source) and the data it was trained on.
2. Read its head as an affine map of a pre-logit vector (:mod:`ltzoo.calibration.heads`) and pass the training
   and val splits through the frozen backbone once, with the eval transform.
3. Choose the calibration on val (:mod:`ltzoo.calibration.select`); test is never looked at before the choice.
4. Fold the deployment prior: ``uniform`` (the default, a balanced test set) keeps the chosen head as it is;
   any other prior (``train``, a file, or an EM estimate from unlabeled deployment images) turns the chosen
   head's logits into log-posteriors under that prior, with bias-corrected temperature scaling fitted on val
   (:mod:`ltzoo.calibration.shift`).
5. Write a run like a trained one (weights, ``config.json`` with a ``calibration`` block, ``metrics.json`` from
   the standard evaluator on val and test, and ``calibration.png``, the val curves): ``ltzoo.load``, eval,
   predict, export and its gate, push and timm loading work on it unchanged.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ltzoo.calibration import AUTO, NONE
from ltzoo.calibration.heads import DEFAULT_COSINE_SCALE, AffineHead, ReadHead, build_head, pre_logits, read_head
from ltzoo.calibration.priors import ESTIMATED, TargetPrior, prior_from_counts, resolve_target_prior
from ltzoo.calibration.select import Choice, choose
from ltzoo.calibration.shift import BCTS, estimate_prior, fit_bcts
from ltzoo.errors import BadDataError, LtzooError
from ltzoo.names import CALIBRATION_PLOT, CONFIG_BLOCK
from ltzoo.portable import portable_model_source

log = logging.getLogger("ltzoo.calibrate")

# config.json's ltzoo fields that describe the new run itself, recomputed rather than copied from the parent.
_RECOMPUTED = {
    "format_version",
    "num_params",
    "data_info",
    "arch",
    "head",
    "weights_sha256",
    "metrics",
    "dataset",
    "num_classes",
    "class_counts",
    "imbalance_factor",
    "split_sizes",
    "shot_split",
    "index_sha256",
    "source",
}


@dataclass(frozen=True)
class CalibrationOptions:
    """What ``ltzoo calibrate`` (and ``to_onnx.py``'s prior options) can ask for."""

    method: str = AUTO
    target_prior: str = "uniform"  # uniform | train | FILE (JSON/CSV by label name)
    estimate_prior: str | None = None  # a folder of unlabeled deployment images: EM on BCTS-calibrated posteriors
    data_root: str | None = None
    batch_size: int = 256


@dataclass
class Calibrated:
    """A calibrated model in memory: the model, what val chose, the prior folded in, and the record of both."""

    model: nn.Module
    head_spec: dict[str, Any]
    choice: Choice
    prior: TargetPrior
    record: dict[str, Any]


class _PooledFeatures:
    """A predictor (numpy batch -> numpy) that returns the pooled backbone features, for the evaluator's loop."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch)
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True).float().numpy()


def split_pre_logits(
    model: nn.Module, read: ReadHead, data: Any, split: str, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(pre-logit vectors, labels) of ``split`` through the frozen backbone, with the eval transform."""
    from ltzoo.data.transforms import eval_transform
    from ltzoo.engine.evaluator import predict

    pooled, labels = predict(
        _PooledFeatures(model), data.split(split), eval_transform(data.info), batch_size, desc=f"features {split}"
    )
    return pre_logits(read, torch.from_numpy(pooled)), labels


def _cosine_scale(config: dict[str, Any]) -> float:
    """The logit scale a cosine head trained with (LDAM's ``s`` in the recipe), for its logit adjustment."""
    recipe = config.get(CONFIG_BLOCK, {}).get("recipe") or {}
    return float((recipe.get("method_args") or {}).get("s", DEFAULT_COSINE_SCALE))


def calibrate_model(
    model: nn.Module, config: dict[str, Any], data: Any, options: CalibrationOptions, parent: str = ""
) -> Calibrated:
    """Choose on val and fold the prior; ``model`` is not changed (the result holds a copy)."""
    lt = config.get(CONFIG_BLOCK, {})
    head_spec = dict(lt.get("head") or {"type": "linear"})
    read = read_head(model.head, head_spec, _cosine_scale(config))
    # Bad input fails here, before any image goes through the backbone.
    deployment_images = list_images(options.estimate_prior) if options.estimate_prior is not None else None
    prior = (
        None
        if deployment_images is not None
        else resolve_target_prior(options.target_prior, data.label_names, data.class_counts)
    )
    counts = np.asarray(data.class_counts, dtype=np.float64)
    log_train_prior = np.log(counts / counts.sum())
    needs_train = options.method in (AUTO, "ncm") and read.not_applicable["ncm"] is None
    train = split_pre_logits(model, read, data, "train", options.batch_size) if needs_train else None
    val = split_pre_logits(model, read, data, "val", options.batch_size)
    choice = choose(options.method, read, val, data.shots, log_train_prior, train)
    log.info(
        "val chose %s: val top-1 %.2f (plain %.2f)",
        choice.chosen.label,
        choice.chosen.val["all"],
        choice.best_per_method[NONE].val["all"] if NONE in choice.best_per_method else float("nan"),
    )

    affine, bcts, estimate = choice.chosen.head, None, None
    if deployment_images is not None:
        prior, bcts, estimate = _estimated_prior(model, config, read, affine, val, deployment_images, options)
    assert prior is not None
    if not prior.is_uniform:
        bcts = bcts or fit_bcts(affine.logits(val[0]), val[1])
        affine = fold_prior(affine, bcts, prior, val[1])
    head, spec = build_head(read, affine)
    calibrated = copy.deepcopy(model)
    calibrated.head = head
    calibrated.eval()
    record = {
        **choice.to_dict(),
        "parent": portable_model_source(parent) if parent else "",
        "parent_weights_sha256": lt.get("weights_sha256"),
        "parent_head": head_spec,
        "target_prior": prior.to_dict(data.label_names),
        "bcts": None if bcts is None else bcts.to_dict(),
        "estimate": estimate,
    }
    return Calibrated(calibrated, spec, choice, prior, record)


def fold_prior(affine: AffineHead, bcts: BCTS, prior: TargetPrior, val_labels: np.ndarray) -> AffineHead:
    """``z / T + c + log pi_target - log pi_val``, folded into the head's weight and bias."""
    num_classes = affine.weight.shape[0]
    val_prior = np.bincount(val_labels, minlength=num_classes).astype(np.float64)
    log_val_prior = np.log(np.maximum(val_prior / val_prior.sum(), 1e-12))
    return affine.with_params(
        weight=affine.weight / bcts.temperature,
        bias=affine.bias / bcts.temperature + np.asarray(bcts.bias) + prior.log() - log_val_prior,
    )


def _estimated_prior(
    model: nn.Module,
    config: dict[str, Any],
    read: ReadHead,
    affine: AffineHead,
    val: tuple[np.ndarray, np.ndarray],
    images: list[Path],
    options: CalibrationOptions,
) -> tuple[TargetPrior, BCTS, dict[str, Any]]:
    """EM on the deployment images' BCTS-calibrated posteriors under the chosen (balanced) head."""
    assert options.estimate_prior is not None
    pooled = pooled_features_of_images(model, config, images, options.batch_size)
    bcts = fit_bcts(affine.logits(val[0]), val[1])
    num_classes = affine.weight.shape[0]
    val_prior = np.bincount(val[1], minlength=num_classes) / len(val[1])
    estimate, iterations = estimate_prior(
        bcts.log_probs(affine.logits(pre_logits(read, torch.from_numpy(pooled)))), val_prior
    )
    source = Path(options.estimate_prior).name
    prior = prior_from_counts(estimate, ESTIMATED, f"EM on {len(pooled)} images of {source}")
    return prior, bcts, {"images": len(pooled), "folder": source, "em_iterations": iterations}


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Every image file under ``folder`` (recursively, sorted), or an error that says what to give."""
    from ltzoo.data.layouts import IMAGE_EXTENSIONS

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise BadDataError(
            f"--estimate-prior {folder}: not a folder; give a folder of unlabeled images from the deployment"
        )
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise BadDataError(f"--estimate-prior {folder}: no image files there ({', '.join(IMAGE_EXTENSIONS)})")
    return paths


def pooled_features_of_images(
    model: nn.Module, config: dict[str, Any], paths: list[Path], batch_size: int
) -> np.ndarray:
    """Pooled features of image files, with the model's own eval transform (as ``ltzoo predict`` reads them)."""
    from ltzoo.data.transforms import eval_transform
    from ltzoo.models.timm_layout import data_config_from_config
    from ltzoo.predict import read_image

    transform, extract = eval_transform(data_config_from_config(config)), _PooledFeatures(model)
    chunks = []
    for start in range(0, len(paths), batch_size):
        batch = torch.stack([transform(read_image(p)) for p in paths[start : start + batch_size]]).numpy()
        chunks.append(extract(np.ascontiguousarray(batch, dtype=np.float32)))
    return np.concatenate(chunks)


def calibrate(
    source: str, out_dir: str | os.PathLike[str], options: CalibrationOptions | None = None
) -> dict[str, Any]:
    """Calibrate ``source`` into the run directory ``out_dir``; returns its metrics (what ``metrics.json`` holds)."""
    from ltzoo.data import build_dataset
    from ltzoo.engine.evaluator import TorchPredictor, evaluate_split
    from ltzoo.loading import load
    from ltzoo.preflight import check_out_dir
    from ltzoo.runs import TrainedOn, build_config, save_run

    options = options or CalibrationOptions()
    out = check_out_dir(out_dir)
    if out.is_dir() and any(out.iterdir()):
        raise LtzooError(f"{out} is not empty; calibrate into a new folder (the parent run is never changed)")
    started = time.time()
    model, config = load(source, with_config=True)
    if not config:
        raise LtzooError(
            f"{source!r} gave a model without a config; calibration needs a trained run or a published model"
        )
    lt = config[CONFIG_BLOCK]
    data = build_dataset(lt["dataset"], options.data_root)
    TrainedOn.from_config(config).check(data)
    result = calibrate_model(model, config, data, options, parent=str(source))

    predictor = TorchPredictor(result.model)  # the standard evaluator: what `ltzoo eval` will find
    val, test = (evaluate_split(predictor, data, split, options.batch_size) for split in ("val", "test"))
    seconds = time.time() - started
    result.record["seconds"] = round(seconds, 1)
    summary = {
        split: {g: r[g] for g in ("all", "many", "medium", "few")} for split, r in (("val", val), ("test", test))
    }
    fields = {key: value for key, value in lt.items() if key not in _RECOMPUTED}
    config_out = build_config(
        result.model,
        arch=lt["arch"],
        in_chans=lt["data_info"]["in_chans"],
        head=result.head_spec,
        label_names=list(config.get("label_names") or data.label_names),
        data_info=lt["data_info"],
        longtail=data.summary(),
        ltzoo_fields={**fields, "metrics": summary, "calibration": result.record},
    )
    metrics = {
        "name": lt.get("name"),
        "selected": lt.get("selected"),
        "precision": lt.get("precision", "fp32"),
        "train_time_s": _parent_train_time(source),
        "calibration": result.record,
        "val": val,
        "test": test,
    }
    out.mkdir(parents=True, exist_ok=True)
    save_run(out, result.model, config_out, metrics)
    from ltzoo.calibration.plot import calibration_curves_png
    from ltzoo.fileio import atomic_write_bytes

    atomic_write_bytes(
        out / CALIBRATION_PLOT,
        calibration_curves_png(
            result.record, title=f"{lt.get('name', source)}: val top-1 against tau (test takes no part)"
        ),
    )
    return metrics


def _parent_train_time(source: str) -> float | None:
    """The parent's training time (a calibrated run costs its parent's training plus seconds)."""
    from ltzoo.fileio import read_json
    from ltzoo.loading import resolve_run_dir
    from ltzoo.source import parse_source

    try:
        run = resolve_run_dir(parse_source(source))
        return read_json(run / "metrics.json", remedy="").get("train_time_s")
    except (LtzooError, OSError):
        return None
