"""Losses and penalties of weight balancing (Alshammari et al. 2022; Hasegawa & Sato 2024).

- :func:`cb_softmax_bce_loss` is the class-balanced "softmax" loss *as the official code defines it*
  (ShadeAlsha/LTR-weight-balancing ``utils/class_balanced_loss.py::CB_loss`` with
  ``loss_type="softmax"``): binary cross-entropy between the softmax probabilities and the one-hot
  targets, each sample weighted by the class-balanced weight of its label, averaged over all
  B x K entries. It is *not* a weighted softmax cross-entropy.
- :func:`weight_decay_penalty` is weight decay as an explicit loss term, lambda * sum ||theta||^2 / 2,
  as HN410/Exploring-Weight-Balancing... ``utils/regularizers.py::set_weight_decay`` adds it.
- :func:`feature_regularization` is lambda_FR * mean_i ||f_i||^2 / 2 on the penultimate features
  (same file, ``set_features_regularization``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.class_balanced import class_balanced_weights
from ltzoo.precision import full_precision


class ClassBalancedSoftmaxBCE(nn.Module):
    """The official CB "softmax" loss with the per-class weights held as a buffer.

    ``gamma`` of the official signature is not taken: the official "softmax" branch ignores it.
    """

    def __init__(self, class_counts: Sequence[int], beta: float = 0.9999) -> None:
        super().__init__()
        self.beta = beta
        self.register_buffer("class_weights", class_balanced_weights(class_counts, beta))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return cb_softmax_bce_loss(logits, targets, self.class_weights)


@full_precision
def cb_softmax_bce_loss(logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """mean_{i,k} w_{y_i} * BCE(softmax(logits)_{ik}, onehot(y_i)_k).

    ``F.binary_cross_entropy`` is used on purpose (not a log-softmax rewrite): it is what the official
    code calls, including its clamp of log(p) at -100, so saturated probabilities behave the same.
    """
    num_classes = logits.shape[1]
    if class_weights.numel() != num_classes:
        raise BadHyperParameterError(
            f"class-balanced loss has {class_weights.numel()} class weights but the logits have "
            f"{num_classes} classes; build the loss from the training set's class counts"
        )
    one_hot = F.one_hot(targets, num_classes).to(logits.dtype)
    per_sample = class_weights.to(logits.device, logits.dtype)[targets]  # (B,)
    weight = per_sample.unsqueeze(1).expand_as(one_hot)
    return F.binary_cross_entropy(logits.softmax(dim=1), one_hot, weight=weight)


def decayed_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the official one-stage code decays: every *trained* parameter.

    In HN410's ``ResnetEncoder.__init_trained_params_list__`` (ETF case) that is all convolution and
    BN weights and biases plus the classifier bias; the fixed ETF matrix is not trained and so not
    decayed. In ltzoo the ETF matrix is a buffer, so "every parameter with requires_grad" is the
    same set.
    """
    return [p for p in model.parameters() if p.requires_grad]


@full_precision
def weight_decay_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum_p ||p||^2 / 2 (multiply by lambda_wd). Its gradient is p, the same as SGD's weight_decay."""
    terms = [p.pow(2).sum() for p in params]
    if not terms:
        raise BadHyperParameterError("weight_decay_penalty got no parameters; is everything frozen?")
    return torch.stack(terms).sum() / 2


@full_precision
def feature_regularization(features: torch.Tensor) -> torch.Tensor:
    """mean_i ||f_i||^2 / 2 over a (B, D) batch of penultimate features (multiply by lambda_FR)."""
    if features.dim() != 2:
        raise BadHyperParameterError(
            f"feature regularisation expects (B, D) features, got shape {tuple(features.shape)}"
        )
    return features.pow(2).sum(dim=1).mean() / 2
