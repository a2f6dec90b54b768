"""SupCon loss against hand-computed values; projection head; the two SCL stages."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ltzoo.data.spec import dataset_spec
from ltzoo.engine.objective import StageContext, get_method
from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.supcon import SupConLoss, supcon_loss, supcon_loss_views
from ltzoo.methods.scl import BalancedClassifier, SupConRepresentation
from ltzoo.models import build_model
from ltzoo.models.projection import ProjectionHead
from ltzoo.registry import get_entry

FMNIST_COUNTS = (1000, 599, 359, 215, 129, 77, 46, 27, 16, 10)


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


# ----- the scl objectives ------------------------------------------------------------------------
def _scl_objective(stage_index: int, recipe=None, **method_args):
    recipe = recipe or get_entry("scl_resnet32.fmnist_lt").recipe()
    recipe = recipe.replace(method_args={**recipe.method_args, **method_args})
    info = dataclasses.replace(dataset_spec("fmnist_lt"), class_counts=FMNIST_COUNTS, train_size=sum(FMNIST_COUNTS))
    ctx = StageContext(
        recipe=recipe, stage=recipe.stages[stage_index], stage_index=stage_index, data=info, steps_per_epoch=1
    )
    model = build_model("resnet32", 10, in_chans=1)
    return get_method("scl")(model, ctx), model


def test_representation_stage_two_views_projection_and_loss():
    objective, model = _scl_objective(0)
    assert isinstance(objective, SupConRepresentation)
    assert objective.projection.in_dim == model.num_features == 64 and objective.projection.out_dim == 128
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    views = objective.train_transform()(image)
    assert len(views) == 2 and all(v.shape == (1, 28, 28) and v.dtype == torch.float32 for v in views)
    assert not torch.equal(views[0], views[1])  # independently augmented
    torch.manual_seed(0)
    view1, view2, targets = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 0, 2])
    loss = objective.training_step(((view1, view2), targets), 0).loss
    model.train()
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(torch.cat([view1, view2])), pre_logits=True)
        expected = supcon_loss(objective.projection(pooled), targets.repeat(2), 0.1, 0.07)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    loss.backward()
    assert model.head.weight.grad is None  # the classifier is not trained in this stage


def test_classifier_stage_is_balanced_and_frozen():
    recipe = get_entry("scl_resnet32.fmnist_lt").recipe()
    stage = recipe.stages[1]
    assert (stage.name, stage.sampler, stage.train) == ("classifier", "class_balanced", "head")
    assert sum(s.epochs for s in recipe.stages) == get_entry("ce_resnet32.fmnist_lt").recipe().stages[0].epochs
    objective, _ = _scl_objective(1)
    assert isinstance(objective, BalancedClassifier)
    broken = recipe.replace(stages=[recipe.stages[0], dataclasses.replace(stage, train="all")])
    with pytest.raises(BadHyperParameterError, match="train='head'"):
        _scl_objective(1, recipe=broken)


def test_scl_bad_hyper_parameters():
    with pytest.raises(BadHyperParameterError, match="temperature"):
        _scl_objective(0, temperature=-0.07)
    recipe = get_entry("scl_resnet32.fmnist_lt").recipe()
    renamed = recipe.replace(stages=[dataclasses.replace(recipe.stages[0], name="pretrain"), recipe.stages[1]])
    with pytest.raises(BadHyperParameterError, match="pretrain"):
        _scl_objective(0, recipe=renamed)
