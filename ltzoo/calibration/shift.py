"""Label shift: calibrated probabilities, and the deployment prior estimated from unlabeled images.

- :func:`fit_bcts`: bias-corrected temperature scaling (Alexandari, Kundaje & Shrikumar, ICML 2020), fitted by
  the negative log-likelihood on val: ``p(y | x) = softmax(z / T + c)``. Its probabilities are calibrated under
  val's class prior (balanced in ltzoo's splits), which is what both EM and a prior change need.
- :func:`estimate_prior`: the EM of Saerens, Latinne & Decaestecker (Neural Computation 2002): re-weight the
  calibrated posteriors by ``pi_target / pi_val`` and set ``pi_target`` to their mean, until it stops moving.
- :func:`shifted_logits`: what a model deployed under ``pi_target`` outputs: ``z / T + c + log pi_target -
  log pi_val``, a log-posterior under the new prior (Bayes' rule with the class-conditionals unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ltzoo.errors import BadHyperParameterError

EM_TOLERANCE = 1e-6
EM_MAX_ITERATIONS = 1000


@dataclass(frozen=True)
class BCTS:
    """``softmax(z / temperature + bias)``: bias-corrected temperature scaling."""

    temperature: float
    bias: tuple[float, ...]

    def log_probs(self, logits: np.ndarray) -> np.ndarray:
        scaled = logits / self.temperature + np.asarray(self.bias)
        return scaled - _logsumexp(scaled)

    def to_dict(self) -> dict[str, object]:
        return {"temperature": round(self.temperature, 6), "bias": [round(b, 6) for b in self.bias]}


def _logsumexp(values: np.ndarray) -> np.ndarray:
    top = values.max(axis=1, keepdims=True)
    return top + np.log(np.exp(values - top).sum(axis=1, keepdims=True))


def fit_bcts(logits: np.ndarray, labels: np.ndarray, max_iterations: int = 200) -> BCTS:
    """Fit T and c on labelled (val) logits by minimising the NLL with L-BFGS (T kept positive as exp of a free
    parameter). Deterministic: float64 on the CPU."""
    if len(logits) == 0:
        raise BadHyperParameterError(
            "bias-corrected temperature scaling needs labelled val images; the val split is empty"
        )
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    log_temperature = torch.zeros((), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [log_temperature, bias],
        lr=0.5,
        max_iter=max_iterations,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-10,
        tolerance_change=1e-12,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_temperature.exp() + bias, y)
        loss.backward()
        return loss

    optimizer.step(closure)
    centred = (bias - bias.mean()).detach()  # softmax ignores a shared shift: store the centred bias
    return BCTS(float(log_temperature.detach().exp()), tuple(centred.tolist()))


def estimate_prior(
    log_probs: np.ndarray,
    source_prior: np.ndarray,
    tolerance: float = EM_TOLERANCE,
    max_iterations: int = EM_MAX_ITERATIONS,
) -> tuple[np.ndarray, int]:
    """Saerens et al.'s EM: the class prior of the images behind ``log_probs`` (calibrated log-posteriors under
    ``source_prior``). Returns the prior and the iterations it took."""
    if len(log_probs) == 0:
        raise BadHyperParameterError("estimating a prior needs at least one unlabeled image")
    probs = np.exp(log_probs - log_probs.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    source = np.asarray(source_prior, dtype=np.float64)
    prior = source.copy()
    for iteration in range(1, max_iterations + 1):
        weighted = probs * (prior / source)
        weighted /= weighted.sum(axis=1, keepdims=True)
        updated = weighted.mean(axis=0)
        if np.abs(updated - prior).max() < tolerance:
            return updated, iteration
        prior = updated
    return prior, max_iterations


def shifted_logits(logits: np.ndarray, bcts: BCTS, log_target: np.ndarray, log_source: np.ndarray) -> np.ndarray:
    """The log-posteriors (up to a per-image constant) of a model deployed under a new class prior."""
    return logits / bcts.temperature + np.asarray(bcts.bias) + log_target - log_source
