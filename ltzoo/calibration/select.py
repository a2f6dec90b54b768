"""Choose a post-hoc calibration on val: every applicable method over its parameter grid, scored by val top-1.

Candidates (each an :class:`~ltzoo.calibration.heads.AffineHead`, so scoring is a matrix product on the frozen
pre-logit vectors of val):
- ``none``: the head as trained (always a candidate);
- ``la``: bias - tau * log(training prior), tau on :data:`LA_GRID` (Menon et al. 2021, post-hoc form);
- ``tau-norm``: each weight row divided by its norm to the power tau, tau on :data:`TAU_NORM_GRID`, bias dropped
  as facebookresearch/classifier-balancing's ``tau_norm`` evaluation does (logits = features @ ws.T);
- ``ncm``: the rows replaced by the classes' mean pre-logit vectors over the training split (eval transform),
  each normalised: the nearest class mean by cosine, as ``benchmarks/feature_probes.py`` measures it.

Rules: a method's best parameter is its best val top-1, ties going to the smallest tau (the least change);
``auto`` keeps the best val top-1 over ``none`` and every method's best, ties going to the simpler method in
the order of :data:`SIMPLICITY`. Only val is ever scored here: test takes no part in any choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ltzoo.calibration import AUTO, METHOD_CHOICES, NONE, SIMPLICITY
from ltzoo.calibration.heads import AffineHead, ReadHead
from ltzoo.data.longtail import ShotSplit
from ltzoo.engine.evaluator import accuracy_report
from ltzoo.errors import BadHyperParameterError

LA_GRID = tuple(round(0.05 * i, 2) for i in range(0, 41))  # 0 ... 2
TAU_NORM_GRID = tuple(round(0.05 * i, 2) for i in range(0, 41))
GROUPS = ("all", "many", "medium", "few")


@dataclass(frozen=True)
class Candidate:
    method: str
    parameter: float | None
    head: AffineHead
    val: dict[str, Any]  # accuracy_report on val

    @property
    def label(self) -> str:
        return self.method if self.parameter is None else f"{self.method} (tau={self.parameter:g})"

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, "parameter": self.parameter, **{g: self.val[g] for g in GROUPS}}


@dataclass
class Choice:
    """What val chose, every method's best, and the val curves (all/many/medium/few per tau) of la and tau-norm."""

    chosen: Candidate
    best_per_method: dict[str, Candidate]
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.chosen.method,
            "parameter": self.chosen.parameter,
            "val": {g: self.chosen.val[g] for g in GROUPS},
            "candidates": {method: candidate.summary() for method, candidate in self.best_per_method.items()},
            "val_curves": self.curves,
            "not_applicable": dict(self.not_applicable),
            "rule": "best val top-1; ties keep the simpler method (none < la < tau-norm < ncm) and the smaller tau; "
            "test takes no part",
        }


def _score(head: AffineHead, pre_logits: np.ndarray, labels: np.ndarray, shots: ShotSplit) -> dict[str, Any]:
    predictions = head.logits(pre_logits).argmax(axis=1)
    return accuracy_report(predictions, labels, head.weight.shape[0], shots)


def class_means(pre_logits: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, D) unit-length means of each class's unit-length pre-logit vectors (cosine NCM)."""
    unit = pre_logits / np.maximum(np.linalg.norm(pre_logits, axis=1, keepdims=True), 1e-12)
    missing = [c for c in range(num_classes) if not np.any(labels == c)]
    if missing:
        raise BadHyperParameterError(f"ncm needs training images of every class; classes {missing} have none")
    means = np.stack([unit[labels == c].mean(axis=0) for c in range(num_classes)])
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


def method_heads(
    method: str, read: ReadHead, log_train_prior: np.ndarray, train: tuple[np.ndarray, np.ndarray] | None
) -> list[tuple[float | None, AffineHead]]:
    """Every (parameter, head) of ``method`` on ``read``'s head."""
    base = read.affine
    if method == NONE:
        return [(None, base)]
    if method == "la":
        return [(tau, base.with_params(bias=base.bias - tau * log_train_prior)) for tau in LA_GRID]
    if method == "tau-norm":
        norms = np.maximum(np.linalg.norm(base.weight, axis=1, keepdims=True), 1e-12)
        return [
            (tau, base.with_params(weight=base.weight / norms**tau, bias=np.zeros_like(base.bias)))
            for tau in TAU_NORM_GRID
        ]
    if method == "ncm":
        assert train is not None, "ncm needs the training split's pre-logit vectors"
        means = class_means(train[0], train[1], base.weight.shape[0])
        # Cosine heads score scale * cosine: keep their scale, so a later bias (a prior) weighs as before.
        scale = float(np.linalg.norm(base.weight, axis=1).mean()) if base.pre == "normalize" else 1.0
        return [(None, base.with_params(weight=means * scale, bias=np.zeros_like(base.bias)))]
    raise BadHyperParameterError(f"unknown calibration method {method!r}; choose one of {list(METHOD_CHOICES)}")


def choose(
    method: str,
    read: ReadHead,
    val: tuple[np.ndarray, np.ndarray],
    shots: ShotSplit,
    log_train_prior: np.ndarray,
    train: tuple[np.ndarray, np.ndarray] | None = None,
) -> Choice:
    """Score ``method`` (or, for ``auto``, every applicable method and ``none``) on val and choose."""
    if method not in METHOD_CHOICES:
        raise BadHyperParameterError(f"unknown calibration method {method!r}; choose one of {list(METHOD_CHOICES)}")
    not_applicable = {m: reason for m, reason in read.not_applicable.items() if reason is not None}
    if method in not_applicable:
        raise BadHyperParameterError(
            f"--method {method} does not apply to this model: {not_applicable[method]}. "
            f"Methods that apply: {read.applicable()} (or auto)"
        )
    tried = [NONE, *read.applicable()] if method == AUTO else [method]
    best: dict[str, Candidate] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    for name in tried:
        scored = [
            Candidate(name, parameter, head, _score(head, val[0], val[1], shots))
            for parameter, head in method_heads(name, read, log_train_prior, train)
        ]
        if len(scored) > 1:
            curves[name] = [candidate.summary() for candidate in scored]
        # max() keeps the first of equals: the grids run from tau = 0 up, so a tie keeps the smaller tau.
        best[name] = max(scored, key=lambda candidate: candidate.val["all"])
    order = [m for m in SIMPLICITY if m in best]
    chosen = max((best[m] for m in order), key=lambda candidate: candidate.val["all"])
    return Choice(chosen, best, curves, not_applicable)
