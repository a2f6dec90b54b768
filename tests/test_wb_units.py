"""Unit tests of the weight-balancing building blocks, against hand-computed values."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from ltzoo.data.longtail import shot_split
from ltzoo.engine.evaluator import accuracy_report
from ltzoo.engine.feature_analysis import classifier_weight, fisher_ratio, per_class_feature_norms
from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.class_balanced import class_balanced_weights
from ltzoo.losses.logit_adjustment import adjust_logits, log_prior
from ltzoo.losses.weight_balancing import (
    ClassBalancedSoftmaxBCE,
    decayed_parameters,
    feature_regularization,
    weight_decay_penalty,
)
from ltzoo.methods.wb_onestage import attach_logit_adjustment, choose_tau_on_val
from ltzoo.models import build_head, build_model
from ltzoo.models.heads import ETFHead, LogitAdjustedHead, simplex_etf
from ltzoo.models.maxnorm import MaxNormPGD


# ----- ETF ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("num_classes", "dim"), [(10, 64), (5, 5), (100, 128)])
def test_etf_rows_have_equal_norms_and_pairwise_cosine_minus_one_over_k_minus_one(num_classes, dim):
    weight = simplex_etf(num_classes, dim, seed=3).double()
    assert weight.shape == (num_classes, dim)
    assert torch.allclose(weight.norm(dim=1), torch.ones(num_classes, dtype=torch.float64), atol=1e-5)
    gram = weight @ weight.T
    off_diagonal = gram[~torch.eye(num_classes, dtype=torch.bool)]
    assert torch.allclose(off_diagonal, torch.full_like(off_diagonal, -1.0 / (num_classes - 1)), atol=1e-5)
    # A simplex ETF sums to zero (its rows are centred).
    assert weight.sum(dim=0).abs().max() < 1e-4


def test_etf_head_weight_is_a_saved_buffer_and_only_the_bias_trains():
    head = ETFHead(64, 10)
    assert [name for name, _ in head.named_parameters()] == ["bias"]
    assert set(head.state_dict()) == {"weight", "bias"}
    # Same seed, same ETF: a rebuilt head matches even before its weights are loaded.
    assert torch.equal(ETFHead(64, 10).weight, head.weight)


def test_etf_head_refuses_a_backbone_narrower_than_the_class_count_and_names_the_fix():
    with pytest.raises(BadHyperParameterError, match="lift_dim"):
        ETFHead(64, 100)
    lifted = ETFHead(64, 100, lift_dim=128)
    assert lifted(torch.randn(4, 64)).shape == (4, 100)
    assert lifted.weight.shape == (100, 128)


# ----- MaxNorm --------------------------------------------------------------------------------------
def test_maxnorm_radius_from_stage_one_rows_and_projection_of_rows_above_it_only():
    weight = torch.tensor([[3.0, 0.0], [0.0, 4.0], [6.0, 8.0], [1.0, 0.0]])  # norms 3, 4, 10, 1
    pgd = MaxNormPGD(thresh=0.1)
    # delta = min + thresh * (max - min) = 1 + 0.1 * 9 = 1.9
    assert pgd.set_radius(weight) == pytest.approx(1.9)
    projected = pgd.project(weight)
    assert projected == 3
    expected = torch.tensor([[1.9, 0.0], [0.0, 1.9], [1.14, 1.52], [1.0, 0.0]])
    assert torch.allclose(weight, expected, atol=1e-6)
    # The radius stays the stage-1 one: rows grown to 3.0 later are brought back to 1.9, not re-measured.
    weight[3] = torch.tensor([0.0, 3.0])
    pgd.project(weight)
    expected[3] = torch.tensor([0.0, 1.9])
    assert torch.allclose(weight, expected, atol=1e-6)


def test_maxnorm_radius_survives_state_dict_and_projecting_before_it_is_set_fails():
    pgd = MaxNormPGD(thresh=0.5)
    with pytest.raises(BadHyperParameterError, match="set_radius"):
        pgd.project(torch.ones(2, 2))
    pgd.set_radius(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))  # 1 + 0.5 * 2 = 2
    restored = MaxNormPGD(thresh=0.5)
    restored.load_state_dict(pgd.state_dict())
    assert restored.has_radius and float(restored.radius) == pytest.approx(2.0)
    with pytest.raises(BadHyperParameterError):
        MaxNormPGD(thresh=1.5)


# ----- class-balanced loss --------------------------------------------------------------------------
def test_class_balanced_weights_match_the_effective_number_formula():
    counts, beta = [1000, 100, 10], 0.999
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    expected = [r / sum(raw) * len(counts) for r in raw]
    weights = class_balanced_weights(counts, beta)
    assert weights.tolist() == pytest.approx(expected, rel=1e-5)
    # Hand-rounded: 0.001/0.6323, 0.001/0.09521, 0.001/0.009955 normalised to sum 3.
    assert weights.tolist() == pytest.approx([0.04216, 0.2800, 2.6778], rel=2e-3)


def test_cb_softmax_loss_is_weighted_bce_on_softmax_probabilities_averaged_over_all_entries():
    # counts [3, 1], beta 0.5: raw weights 0.5/0.875 and 0.5/0.5 -> normalised [8/11, 14/11].
    loss_fn = ClassBalancedSoftmaxBCE([3, 1], beta=0.5)
    assert loss_fn.class_weights.tolist() == pytest.approx([8 / 11, 14 / 11], rel=1e-6)
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    targets = torch.tensor([0, 1])
    # Sample 0: p = [0.5, 0.5], both entries cost ln 2, weight 8/11.
    # Sample 1: p = [0.75, 0.25], target 1: entries cost -ln(0.25) and -ln(0.25), weight 14/11.
    expected = (2 * (8 / 11) * math.log(2) + 2 * (14 / 11) * math.log(4)) / 4
    assert float(loss_fn(logits, targets)) == pytest.approx(expected, rel=1e-6)


def test_cb_loss_rejects_counts_that_do_not_match_the_logits():
    loss_fn = ClassBalancedSoftmaxBCE([3, 1, 1], beta=0.9)
    with pytest.raises(BadHyperParameterError, match="class counts"):
        loss_fn(torch.zeros(2, 2), torch.tensor([0, 1]))


# ----- penalties ------------------------------------------------------------------------------------
def test_weight_decay_penalty_is_half_the_squared_norm_and_its_gradient_is_theta():
    a = torch.tensor([3.0, 4.0], requires_grad=True)
    b = torch.tensor([[1.0]], requires_grad=True)
    penalty = weight_decay_penalty([a, b])
    assert penalty.item() == pytest.approx((9 + 16 + 1) / 2)
    penalty.backward()
    assert a.grad.tolist() == [3.0, 4.0] and b.grad.tolist() == [[1.0]]


def test_decayed_parameters_are_the_trained_ones_and_exclude_the_fixed_etf():
    model = build_model("resnet32", 10, in_chans=1, head={"type": "etf"})
    decayed = {id(p) for p in decayed_parameters(model)}
    names = {name for name, p in model.named_parameters() if id(p) in decayed}
    assert "head.bias" in names
    assert any(n.endswith("bn1.weight") for n in names) and any(n.endswith("bn1.bias") for n in names)
    assert "head.weight" not in names and "head.weight" in model.state_dict()


def test_feature_regularization_is_half_the_mean_squared_feature_norm():
    features = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert float(feature_regularization(features)) == pytest.approx((25 + 0) / 2 / 2)


# ----- logit adjustment -----------------------------------------------------------------------------
def test_tau_zero_leaves_logits_unchanged_in_both_modes():
    logits = torch.randn(5, 3)
    prior = log_prior([100, 10, 1])
    for mode in ("multiplicative", "additive"):
        assert torch.equal(adjust_logits(logits, prior, 0.0, mode), logits)
    head = build_head({"type": "logit_adjusted", "tau": 0.0, "base": {"type": "linear"}}, 4, 3)
    head.log_prior.copy_(prior)
    features = torch.randn(5, 4)
    assert torch.equal(head(features), head.base(features))


def test_logit_adjustment_by_hand():
    logits = torch.tensor([[1.0, 1.0, -2.0]])
    prior = log_prior([2, 1, 1])  # pi = [0.5, 0.25, 0.25]
    assert adjust_logits(logits, prior, 1.0, "multiplicative").tolist()[0] == pytest.approx([2.0, 4.0, -8.0])
    additive = adjust_logits(logits, prior, 0.5, "additive").tolist()[0]
    assert additive == pytest.approx([1 + 0.5 * math.log(2), 1 + 0.5 * math.log(4), -2 + 0.5 * math.log(4)])
    with pytest.raises(BadHyperParameterError):
        adjust_logits(logits, prior, 1.0, "exponential")


def test_logit_adjusted_head_rebuilds_from_its_spec_and_loads_the_prior_from_weights():
    spec = {"type": "logit_adjusted", "tau": 0.65, "mode": "multiplicative", "base": {"type": "etf"}}
    trained = build_head(spec, 64, 10)
    trained.log_prior.copy_(log_prior(list(range(10, 0, -1))))
    trained.base.bias.data.normal_()
    rebuilt = build_head(spec, 64, 10)
    rebuilt.load_state_dict(trained.state_dict(), strict=True)
    features = torch.randn(3, 64)
    assert torch.equal(rebuilt(features), trained(features))
    assert isinstance(rebuilt, LogitAdjustedHead) and isinstance(rebuilt.base, ETFHead)


# ----- analysis measurements ------------------------------------------------------------------------
def test_fisher_ratio_by_hand_one_dimension():
    # class 0: {0, 2} (mean 1), class 1: {4, 6} (mean 5), overall mean 3.
    # S_b = 2 (1-3)^2 + 2 (5-3)^2 = 16; S_w = 1 + 1 + 1 + 1 = 4; ratio 4.
    features = torch.tensor([[0.0], [2.0], [4.0], [6.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert fisher_ratio(features, labels) == pytest.approx(4.0)


def test_fisher_ratio_ignores_a_constant_dimension_and_grows_with_separation():
    labels = torch.tensor([0, 0, 1, 1])
    features = torch.tensor([[0.0, 7.0], [2.0, 7.0], [4.0, 7.0], [6.0, 7.0]])  # 2nd dim constant
    assert fisher_ratio(features, labels) == pytest.approx(4.0)
    wider = torch.tensor([[0.0], [2.0], [8.0], [10.0]])  # means 1 and 9: S_b = 2*4^2 + 2*4^2 = 64, S_w = 4
    assert fisher_ratio(wider, labels) == pytest.approx(16.0)


def test_per_class_feature_norms_and_classifier_weight_of_a_logit_adjusted_head():
    features = torch.tensor([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]])
    labels = torch.tensor([0, 1, 0])
    norms = per_class_feature_norms(features, labels, 3)
    assert norms[:2].tolist() == pytest.approx([7.5, 1.0]) and math.isnan(norms[2])

    head = build_head({"type": "logit_adjusted", "tau": 1.0, "base": {"type": "linear"}}, 2, 2)
    head.log_prior.copy_(log_prior([3, 1]))  # pi = [0.75, 0.25] -> rows scaled by 4/3 and 4
    head.base.weight.data = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert classifier_weight(head).tolist() == [pytest.approx([4 / 3, 0.0]), pytest.approx([0.0, 8.0])]
    linear = nn.Linear(2, 2)
    assert classifier_weight(linear) is linear.weight


def test_format_and_plot_report(tmp_path):
    from ltzoo.engine.feature_analysis import AnalysisReport, format_report, plot_report

    report = AnalysisReport("val", 2.5, [1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [100, 10, 1], ["a", "b", "c"])
    text = format_report(report)
    assert "2.5" in text and "+1.000" in text  # norms fall with the count: fully unbalanced classifier
    etf = AnalysisReport("val", 2.5, [1.0, 2.0, 3.0], [1.0, 1.0 + 1e-9, 1.0 - 1e-9], [100, 10, 1], ["a", "b", "c"])
    assert "equal across classes" in format_report(etf)
    path = plot_report(report, tmp_path / "sub" / "plot.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_heads_build_on_the_meta_device_as_ltzoo_load_does():
    spec = {"type": "logit_adjusted", "tau": 0.65, "mode": "multiplicative", "base": {"type": "etf", "lift_dim": 16}}
    with torch.device("meta"):
        head = build_head(spec, 8, 10)
    assert head.log_prior.is_meta and head.base.weight.is_meta and head.base.weight.shape == (10, 16)


# ----- the tau search on val ------------------------------------------------------------------------
class _LogitsAsInput(nn.Module):
    """The 'features' are the logits themselves: identity linear head, no bias."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2, 2, bias=False)
        self.head.weight.data = torch.eye(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def test_tau_is_chosen_on_val_by_mean_class_accuracy():
    # counts [9, 1]: multiplicative LA scales the logits by [0.9^-tau, 0.1^-tau].
    # sample A (label 1) logits [1, 0.5]: right once 0.5 * 9^tau > 1, i.e. tau > 0.315;
    # sample B (label 0) logits [1, 0.2]: right while 0.2 * 9^tau < 1, i.e. tau < 0.732.
    # grid {0, 0.5, 1}: mean class accuracy 50, 100, 50 -> tau 0.5.
    x = torch.tensor([[1.0, 0.5], [1.0, 0.2]])
    y = np.array([1, 0])
    split = shot_split([9, 1], many_threshold=5, few_threshold=2)
    calls = []

    def evaluate_val(m: nn.Module) -> dict:
        calls.append(m.head.tau)
        with torch.no_grad():
            report = accuracy_report(m(x).argmax(1).numpy(), y, 2, split)
        return {**report, "split": "val"}

    model = _LogitsAsInput()
    tau, table = choose_tau_on_val(model, [9, 1], evaluate_val, [1.0, 0.0, 0.5])
    assert tau == 0.5 and table == {0.0: 50.0, 0.5: 100.0, 1.0: 50.0}
    assert calls == [0.0, 0.5, 1.0]
    assert isinstance(model.head, LogitAdjustedHead) and model.head.tau == 0.5
    assert math.isclose(float(model.head.log_prior[1].exp()), 0.1, rel_tol=1e-6)


def test_tau_search_refuses_a_test_split_and_a_second_adjustment():
    model = _LogitsAsInput()
    with pytest.raises(BadHyperParameterError, match="val"):
        choose_tau_on_val(model, [9, 1], lambda m: {"split": "test", "mean_class": 1.0}, [0.0])
    with pytest.raises(BadHyperParameterError, match="already"):
        attach_logit_adjustment(model, [9, 1], 1.0)


# ----- the zoo entries ------------------------------------------------------------------------------
WB_ENTRIES = {
    "wb_resnet32.cifar100_lt": "linear",
    "wb_resnet32.cifar10_lt": "linear",
    "wb_resnet32.fmnist_lt": "linear",
    "wb_resnext50_32x4d.imagenet_lt": "linear",
    "wb_resnet50.inat2018": "linear",
    "ce_wd_resnet32.cifar100_lt": "linear",
    "ce_wd_resnet32.cifar10_lt": "linear",
    "ce_wd_resnet32.fmnist_lt": "linear",
    "wb_onestage_resnet32.cifar100_lt": "etf",
    "wb_onestage_resnet32.cifar10_lt": "etf",
    "wb_onestage_resnet32.fmnist_lt": "etf",
}


def test_every_weight_balancing_entry_builds_and_says_what_it_follows():
    import ltzoo
    from ltzoo.registry import get_entry, list_models

    assert set(list_models(["wb_*", "ce_wd_*"])) == set(WB_ENTRIES)
    assert get_entry("wb_resnet32").tag == "cifar100_lt" and get_entry("wb_onestage_resnet32").tag == "cifar100_lt"
    for name, head_type in WB_ENTRIES.items():
        recipe = get_entry(name).recipe()
        assert recipe.head.get("type", "linear") == head_type, name
        assert recipe.stages[-1].select_on_val, name  # never select on test
        if recipe.method == "wb":
            assert [s.name for s in recipe.stages] == ["stage1", "stage2"] and recipe.stages[1].train == "head"
            assert recipe.stages[1].weight_decay == 0.1 and recipe.method_args["cb_beta"] == 0.9999
    # Where paper and code disagree, the CIFAR recipes say which one they follow.
    assert "PAPER" in get_entry("wb_resnet32.cifar100_lt").recipe().notes
    assert get_entry("wb_resnet32.cifar100_lt").recipe().stages[0].epochs == 200
    assert "CODE's 320 epochs" in get_entry("wb_onestage_resnet32.cifar100_lt").recipe().notes
    assert get_entry("wb_onestage_resnet32.cifar100_lt").recipe().stages[0].epochs == 320
    # 64-d ResNet-32 features cannot hold a 100-class ETF: the CIFAR-100 head lifts them first.
    model = ltzoo.create_model("wb_onestage_resnet32.cifar100_lt")
    assert isinstance(model.head, ETFHead) and model.head.weight.shape == (100, 128)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


# torch warns that scheduler.step() comes before optimizer.step(): that order is the official code's,
# and it is what skips the undecayed first value.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
@pytest.mark.parametrize("epochs", [10, 3])
def test_cosine_epoch_schedule_steps_like_the_official_wb_train_model(epochs):
    """utils/trainval.py calls schedulerW.step() at the start of every training phase, before that
    epoch's steps; the lr then stays constant through the epoch."""
    from ltzoo.engine.schedule import lr_factor
    from ltzoo.recipe import StageConfig

    weight = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.01, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs, eta_min=0)
    stage = StageConfig(epochs=epochs, lr=0.01, schedule="cosine_epoch")
    official = []
    for epoch in range(epochs):
        scheduler.step()
        official.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        for step in range(5):
            assert stage.lr * lr_factor(stage, epoch, step, 5) == pytest.approx(official[-1], abs=1e-12)
    assert official[0] < 0.01 and official[-1] == pytest.approx(0.0, abs=1e-12)  # decayed first, lr 0 last
    # ltzoo's per-step "cosine" starts at the full lr and never spends an epoch at 0.
    per_step = dataclasses.replace(stage, schedule="cosine")
    assert lr_factor(per_step, 0, 0, 5) == 1.0 and lr_factor(per_step, epochs - 1, 0, 5) > 0
