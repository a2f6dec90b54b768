"""SupCon loss against hand-computed values; projection head shapes."""

from __future__ import annotations

import math

import pytest
import torch

from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.supcon import SupConLoss, supcon_loss, supcon_loss_views
from ltzoo.models.projection import ProjectionHead


def test_two_views_hand_computed():
    # Two samples of different classes, each with two identical views on orthogonal axes, tau = 1.
    # Every anchor: one positive with similarity 1, two negatives with similarity 0:
    # loss = -(1 - log(e + 1 + 1)).
    features = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])
    loss = supcon_loss_views(features, torch.tensor([0, 1]), temperature=1.0, base_temperature=1.0)
    assert loss.item() == pytest.approx(math.log(math.e + 2) - 1, rel=1e-6)


def test_flat_batch_with_an_anchor_without_positives():
    # e1=(1,0), e2=(0.6,0.8), e3=(0,1); labels 0, 0, 1; tau = base = 0.5 -> sims/tau 1.2, 0, 1.6.
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    anchor1 = -(1.2 - math.log(math.exp(1.2) + math.exp(0.0)))
    anchor2 = -(1.2 - math.log(math.exp(1.2) + math.exp(1.6)))
    anchor3 = 0.0  # no positive: the guard divides by 1, the anchor still counts in the mean
    expected = (anchor1 + anchor2 + anchor3) / 3
    loss = supcon_loss(emb, labels, temperature=0.5, base_temperature=0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert torch.isfinite(loss)
    # tau / base_tau scales the loss; inputs are normalised inside, so scaling them changes nothing.
    scaled = supcon_loss(3.0 * emb, labels, temperature=0.5, base_temperature=0.07)
    assert scaled.item() == pytest.approx(expected * 0.5 / 0.07, rel=1e-5)


def test_views_equal_flat_view_major():
    torch.manual_seed(0)
    features = torch.randn(4, 2, 8)
    labels = torch.tensor([0, 1, 0, 2])
    flat = torch.cat([features[:, 0], features[:, 1]])
    assert SupConLoss(0.1)(features, labels).item() == pytest.approx(
        supcon_loss(flat, labels.repeat(2), 0.1).item(), rel=1e-6
    )


def test_gradient_pulls_positives_together():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.2]], requires_grad=True)
    supcon_loss(emb, torch.tensor([0, 0, 1]), temperature=0.1).backward()
    # Anchor 0's positive lies along +y: descending the gradient moves it towards +y.
    assert emb.grad[0, 1] < 0


@pytest.mark.parametrize("temperature", [-0.1, 0.0])
def test_bad_temperature(temperature):
    with pytest.raises(BadHyperParameterError, match="temperature"):
        SupConLoss(temperature=temperature)
    with pytest.raises(BadHyperParameterError, match="temperature"):
        supcon_loss(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), temperature=temperature)


def test_projection_head():
    head = ProjectionHead(64, 64, 128)
    assert head(torch.randn(5, 64)).shape == (5, 128)
    assert sum(p.numel() for p in head.parameters()) == 64 * 64 + 64 + 64 * 128 + 128
    with pytest.raises(BadHyperParameterError):
        ProjectionHead(64, 0, 128)
