"""LDAM margins and loss, the DRW schedule, and the ldam_drw objective (DRW / DRS switches)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ltzoo.data.spec import dataset_spec
from ltzoo.engine.objective import StageContext, get_method
from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.class_balanced import class_balanced_weights
from ltzoo.losses.ldam import DeferredReweighting, LDAMLoss, ldam_margins
from ltzoo.methods.ldam_drw import EpochSwitchLoader
from ltzoo.models import build_model
from ltzoo.registry import get_entry


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


# ----- the ldam_drw objective ------------------------------------------------------------------
FMNIST_COUNTS = (1000, 599, 359, 215, 129, 77, 46, 27, 16, 10)


def _objective(recipe, stage_index=0):
    info = dataclasses.replace(dataset_spec(recipe.dataset), class_counts=FMNIST_COUNTS, train_size=sum(FMNIST_COUNTS))
    ctx = StageContext(
        recipe=recipe, stage=recipe.stages[stage_index], stage_index=stage_index, data=info, steps_per_epoch=1
    )
    model = build_model(recipe.arch, info.num_classes, info.in_chans, head=recipe.head)
    return get_method(recipe.method)(model, ctx), model


def _short(recipe, epochs, **method_args):
    stages = [dataclasses.replace(s, epochs=epochs, warmup_epochs=0, milestones=()) for s in recipe.stages]
    return recipe.replace(stages=stages, method_args={**recipe.method_args, **method_args})


def test_objective_switches_drw_at_configured_epoch_of_the_stage():
    recipe = _short(get_entry("ldam_drw_resnet32.fmnist_lt").recipe(), epochs=10, drw_start_fraction=0.3)
    objective, model = _objective(recipe)
    assert objective.drw_epoch == 3
    torch.manual_seed(0)
    images, targets = torch.randn(6, 1, 28, 28), torch.tensor([0, 0, 0, 1, 8, 9])
    model.eval()  # fixed logits, so the loss changes only through the weights
    objective.on_epoch_start(2)
    assert objective.criterion.weight.tolist() == pytest.approx([1.0] * 10)
    uniform = objective.training_step((images, targets), 2).loss
    objective.on_epoch_start(3)
    expected = class_balanced_weights(FMNIST_COUNTS, 0.9999)
    assert torch.allclose(objective.criterion.weight, expected)
    weighted = objective.training_step((images, targets), 3).loss
    with torch.no_grad():
        logits = model(images)
    assert weighted.item() == pytest.approx(
        LDAMLoss(FMNIST_COUNTS, 0.5, 30.0, expected)(logits, targets).item(), rel=1e-5
    )
    assert weighted.item() != pytest.approx(uniform.item(), rel=1e-3)


def test_official_cifar_drw_epoch_is_160():
    objective, _ = _objective(get_entry("ldam_drw_resnet32.cifar100_lt").recipe().replace(dataset="fmnist_lt"))
    assert objective.drw_epoch == 160 and objective.drw.beta == 0.9999


def test_ldam_needs_cosine_head_and_known_args():
    recipe = get_entry("ldam_drw_resnet32.fmnist_lt").recipe()
    with pytest.raises(BadHyperParameterError, match="cosine"):
        _objective(recipe.replace(head={"type": "linear"}))
    with pytest.raises(BadHyperParameterError, match="max_margin"):
        _objective(_short(recipe, 5, max_margin=0.5))
    with pytest.raises(BadHyperParameterError, match="drw_start_fraction"):
        _objective(_short(recipe, 5, drw_start_fraction=1.5))


def test_deferred_resampling_switches_loader():
    loader = EpochSwitchLoader(before=[1, 2, 3], after=["a", "b"], switch_epoch=2)
    seen = []
    for epoch in range(4):
        loader.set_epoch(epoch)
        seen.append((list(loader), len(loader)))
    assert seen == [([1, 2, 3], 3), ([1, 2, 3], 3), (["a", "b"], 2), (["a", "b"], 2)]


def test_drs_objective_switches_to_the_official_effective_number_sampler():
    recipe = _short(
        get_entry("ldam_drw_resnet32.fmnist_lt").recipe(), 5, drw_start_fraction=None, drs_start_fraction=0.4
    )
    objective, _ = _objective(recipe)
    made = []
    loader = objective.train_loader(lambda sampler, transform: made.append(sampler) or [sampler])
    assert made == ["instance", "effective_number"]  # the ImbalancedDatasetSampler of Jianf-Wang/RSG
    objective.on_epoch_start(1)
    assert list(loader) == ["instance"]
    objective.on_epoch_start(2)
    assert list(loader) == ["effective_number"]
    assert objective.criterion.weight is None  # no DRW in a DRS recipe


def test_drs_sampler_is_a_known_sampler_kind():
    recipe = get_entry("ldam_drw_resnet32.fmnist_lt").recipe()
    objective, _ = _objective(_short(recipe, 5, drs_start_fraction=0.4, drs_sampler="class_balanced"))
    made = []
    objective.train_loader(lambda sampler, transform: made.append(sampler) or [sampler])
    assert made == ["instance", "class_balanced"]
    with pytest.raises(BadHyperParameterError, match="drs_sampler 'balanced'"):
        _objective(_short(recipe, 5, drs_start_fraction=0.4, drs_sampler="balanced"))
