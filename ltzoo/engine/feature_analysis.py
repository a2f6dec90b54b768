"""Feature and classifier analysis as an evaluation extra (``ltzoo eval --analysis``): the measurements of the
weight-balancing analysis, which serve any model.

Hasegawa & Sato (ICLR 2024) explain weight balancing with three measurements, all computed here on
the features the classifier's last linear map sees:

- the Fisher discriminant ratio tr(S_w^-1 S_b) of the features (higher = classes better separated;
  weight decay + CE raises it), as HN410/Exploring-Weight-Balancing... ``utils/eval_funcs.py::calc_fdr``:
  S_b = sum_c n_c (mu_c - mu)(mu_c - mu)^T, S_w = sum_i (f_i - mu_{y_i})(f_i - mu_{y_i})^T, in float64,
  with dimensions that are constant over the split removed first;
- the mean feature norm per class;
- the norm of each class's classifier row (with a multiplicative logit adjustment folded in, since
  that is the row the deployed model really uses).

A balanced model shows weight norms that no longer grow with the training count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ltzoo.errors import BadDataError, ConfigMismatchError
from ltzoo.models.heads import CosineHead, ETFHead, LogitAdjustedHead


@dataclass
class AnalysisReport:
    split: str
    fisher_ratio: float
    feature_norms: list[float]  # per class, mean ||f|| over the split's images of that class
    weight_norms: list[float]  # per class, ||w_k|| of the (effective) classifier row
    class_counts: list[int]  # training images per class
    label_names: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----- the three measurements ---------------------------------------------------------------------
def fisher_ratio(features: torch.Tensor, labels: torch.Tensor) -> float:
    """tr(S_w^-1 S_b) over the classes present in ``labels``; (N, D) features, (N,) labels."""
    if features.dim() != 2 or labels.shape != features.shape[:1]:
        raise BadDataError(
            f"fisher_ratio needs (N, D) features and (N,) labels, got {tuple(features.shape)} and {tuple(labels.shape)}"
        )
    x = features.to(torch.float64)
    # As the official code: drop dimensions that are (almost) constant, e.g. dead ReLU channels,
    # which would make S_w singular without carrying any class information.
    scale = x.abs().mean().clamp_min(1e-12)
    varying = ((x - x[:1]).abs() > scale * 1e-3).any(dim=0)
    x = x[:, varying]
    classes = labels.unique()
    if len(classes) < 2 or x.shape[1] == 0:
        raise BadDataError("the Fisher ratio needs at least two classes and one non-constant feature")
    mean = x.mean(dim=0)
    s_b = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    s_w = torch.zeros_like(s_b)
    for c in classes:
        xc = x[labels == c]
        diff = (xc.mean(dim=0) - mean).unsqueeze(1)
        s_b += len(xc) * (diff @ diff.T)
        centred = xc - xc.mean(dim=0)
        s_w += centred.T @ centred
    try:
        ratio = torch.linalg.solve(s_w, s_b).trace()
    except RuntimeError:  # singular S_w (fewer samples than dimensions): the pseudo-inverse is the limit
        ratio = (torch.linalg.pinv(s_w) @ s_b).trace()
    return float(ratio)


def per_class_feature_norms(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K,) mean L2 norm of the features of each class; NaN for a class with no sample."""
    norms = features.to(torch.float64).norm(dim=1)
    out = torch.full((num_classes,), math.nan, dtype=torch.float64)
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            out[c] = norms[mask].mean()
    return out


def classifier_weight(head: nn.Module) -> torch.Tensor:
    """The (K, D) rows the head scores features with (see the module docstring)."""
    if isinstance(head, LogitAdjustedHead):
        weight = classifier_weight(head.base)
        if head.mode == "multiplicative":  # logits * pi^-tau == rows (and bias) scaled by pi^-tau
            weight = weight * torch.exp(-head.tau * head.log_prior).unsqueeze(1)
        return weight
    if isinstance(head, ETFHead):
        return head.weight
    if isinstance(head, nn.Linear):
        return head.weight
    if isinstance(head, CosineHead):
        return F.normalize(head.weight, dim=0).T
    raise ConfigMismatchError(f"no classifier-weight analysis for head {type(head).__name__}")


def classifier_input(head: nn.Module, pooled: torch.Tensor) -> torch.Tensor:
    """What the head's last linear map sees: pooled features, or the ETF head's lifted ones."""
    pre_logits = getattr(head, "pre_logits", None)
    return pre_logits(pooled) if pre_logits is not None else pooled


# ----- running it on a model -----------------------------------------------------------------------
@torch.no_grad()
def collect_features(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier-input features and labels of every item of ``dataset`` (already eval-transformed)."""
    was_training = model.training
    model.eval()
    feats, labels = [], []
    try:
        for images, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            pooled = model.forward_head(model.forward_features(images), pre_logits=True)
            feats.append(classifier_input(model.head, pooled).cpu())
            labels.append(torch.as_tensor(targets))
    finally:
        model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def analyze(model: nn.Module, data: Any, split: str = "val", batch_size: int = 256) -> AnalysisReport:
    """Measure ``model`` on one split of an :class:`ltzoo.data.LTDataset`."""
    from ltzoo.data import TransformedDataset, eval_transform

    dataset = TransformedDataset(data.split(split), eval_transform(data.info))
    features, labels = collect_features(model, dataset, batch_size)
    weight = classifier_weight(model.head).detach().cpu()
    if weight.shape[0] != data.num_classes:
        raise ConfigMismatchError(f"the model has {weight.shape[0]} classes, the dataset {data.num_classes}")
    return AnalysisReport(
        split=split,
        fisher_ratio=fisher_ratio(features, labels),
        feature_norms=per_class_feature_norms(features, labels, data.num_classes).tolist(),
        weight_norms=weight.to(torch.float64).norm(dim=1).tolist(),
        class_counts=list(data.class_counts),
        label_names=list(data.label_names),
    )


def format_report(report: AnalysisReport) -> str:
    lines = [
        f"analysis on {report.split}: Fisher discriminant ratio tr(Sw^-1 Sb) = {report.fisher_ratio:.4g}",
        f"{'class':>5} {'name':<16} {'train n':>8} {'feature norm':>13} {'weight norm':>12}",
    ]
    for k, (count, fnorm, wnorm) in enumerate(zip(report.class_counts, report.feature_norms, report.weight_norms)):
        name = report.label_names[k] if k < len(report.label_names) else str(k)
        lines.append(f"{k:>5} {name[:16]:<16} {count:>8} {fnorm:>13.4f} {wnorm:>12.4f}")
    corr = _rank_correlation(report.class_counts, report.weight_norms)
    if corr is None:
        lines.append("weight norms are equal across classes (e.g. a fixed ETF): the classifier itself is balanced")
    else:
        lines.append(f"Spearman correlation (train count, weight norm) = {corr:+.3f} (near 0 or below = balanced)")
    return "\n".join(lines)


def plot_report(report: AnalysisReport, path: str | Path) -> Path:
    """Two bar charts (feature norms, weight norms) over classes sorted by training count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(range(len(report.class_counts)), key=lambda k: -report.class_counts[k])
    ticks = [f"{k}\n(n={report.class_counts[k]})" for k in order]
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.45 * len(order)), 6), sharex=True)
    axes[0].bar(range(len(order)), [report.feature_norms[k] for k in order], color="tab:blue")
    axes[0].set_ylabel("mean feature norm")
    axes[0].set_title(f"{report.split}: Fisher ratio {report.fisher_ratio:.3g}")
    axes[1].bar(range(len(order)), [report.weight_norms[k] for k in order], color="tab:orange")
    axes[1].set_ylabel("classifier weight norm")
    axes[1].set_xlabel("class (training count), most frequent first")
    if len(order) <= 40:  # tick labels become unreadable beyond that
        axes[1].set_xticks(range(len(order)), ticks, fontsize=7)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _rank_correlation(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman correlation with average ranks for ties; None when either side is constant.

    Values are compared at 6 significant digits, so the unit rows of an ETF (equal up to float
    rounding) count as ties instead of producing a spurious order.
    """
    ranks_a, ranks_b = _average_ranks(a), _average_ranks(b)
    ranks_a -= ranks_a.mean()
    ranks_b -= ranks_b.mean()
    denom = ranks_a.norm() * ranks_b.norm()
    return float((ranks_a @ ranks_b) / denom) if denom > 0 else None


def _average_ranks(values: Sequence[float]) -> torch.Tensor:
    rounded = [float(f"{v:.6g}") for v in values]
    order = sorted(set(rounded))
    positions: dict[float, list[int]] = {}
    for rank, value in enumerate(sorted(rounded)):
        positions.setdefault(value, []).append(rank)
    mean_rank = {v: sum(positions[v]) / len(positions[v]) for v in order}
    return torch.tensor([mean_rank[v] for v in rounded], dtype=torch.float64)
