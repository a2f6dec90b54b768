"""LDAM margins and loss, and the DRW schedule, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.ldam import DeferredReweighting, LDAMLoss, ldam_margins


def test_margins_hand_computed():
    # n^(-1/4) for counts 16, 1, 81 is 1/2, 1, 1/3; the largest is scaled to max_m = 0.5.
    margins = ldam_margins([16, 1, 81], max_m=0.5)
    assert margins.tolist() == pytest.approx([0.25, 0.5, 0.5 / 3], abs=1e-7)


def test_margins_ordered_inversely_to_counts():
    counts = [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
    margins = ldam_margins(counts, max_m=0.5)
    assert all(a < b for a, b in zip(margins, margins[1:])), "rarer classes must get larger margins"
    assert margins.max().item() == pytest.approx(0.5)
    assert margins[-1].item() == pytest.approx(0.5)  # the rarest class gets max_m
    # m_i / m_j = (n_j / n_i)^(1/4)
    assert (margins[0] / margins[-1]).item() == pytest.approx((10 / 1000) ** 0.25, rel=1e-6)


def test_ldam_loss_hand_computed():
    # counts 16, 1 -> margins 0.25, 0.5; s = 10.
    loss_fn = LDAMLoss([16, 1], max_m=0.5, s=10.0)
    cosines = torch.tensor([[0.5, 0.2], [0.1, 0.9]])
    targets = torch.tensor([0, 1])
    # sample 0: logits 10*[0.5-0.25, 0.2] = [2.5, 2.0] -> CE = log(1 + e^-0.5)
    # sample 1: logits 10*[0.1, 0.9-0.5] = [1.0, 4.0] -> CE = log(1 + e^-3)
    ce0, ce1 = math.log(1 + math.exp(-0.5)), math.log(1 + math.exp(-3.0))
    assert loss_fn(cosines, targets).item() == pytest.approx((ce0 + ce1) / 2, rel=1e-6)
    # Weighted mean as torch's cross_entropy(weight=...): sum w_y * ce / sum w_y.
    loss_fn.set_weight(torch.tensor([1.0, 3.0]))
    assert loss_fn(cosines, targets).item() == pytest.approx((ce0 + 3 * ce1) / 4, rel=1e-6)


def test_ldam_zero_margin_is_scaled_cross_entropy():
    cosines = torch.tensor([[0.3, -0.2, 0.1]])
    loss = LDAMLoss([5, 5, 5], max_m=0.0, s=2.0)(cosines, torch.tensor([2]))
    expected = -math.log(math.exp(0.2) / (math.exp(0.6) + math.exp(-0.4) + math.exp(0.2)))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_drw_switches_at_configured_epoch():
    drw = DeferredReweighting([100, 10], start_epoch=3, beta=0.9)
    for epoch in range(3):
        assert not drw.is_active(epoch)
        assert drw.weights(epoch).tolist() == pytest.approx([1.0, 1.0])
    # (1 - beta) / (1 - beta^n), normalised to sum to 2.
    w_head = 0.1 / (1 - 0.9**100)
    w_tail = 0.1 / (1 - 0.9**10)
    total = w_head + w_tail
    expected = [2 * w_head / total, 2 * w_tail / total]
    for epoch in (3, 4, 400):
        assert drw.is_active(epoch)
        assert drw.weights(epoch).tolist() == pytest.approx(expected, rel=1e-5)
    assert expected[1] > expected[0]


@pytest.mark.parametrize(
    "build",
    [
        lambda: LDAMLoss([10, 1], s=0.0),
        lambda: LDAMLoss([10, 1], max_m=-0.1),
        lambda: LDAMLoss([10, 0]),
        lambda: DeferredReweighting([10, 1], start_epoch=-1),
        lambda: DeferredReweighting([10, 1], start_epoch=5, beta=1.0),
    ],
)
def test_bad_hyper_parameters(build):
    with pytest.raises(BadHyperParameterError):
        build()
