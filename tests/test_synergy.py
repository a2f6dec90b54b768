"""SCL + RSG + LDAM: the joint objective and its switches, the zoo names, and every recipe of this
family (ldam_drw, scl, rsg, scl_rsg_ldam) training briefly on real fmnist_lt images and saving a
loadable model."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

import ltzoo
from ltzoo.data import LTDataset, TensorImageDataset, eval_transform
from ltzoo.data.spec import dataset_spec
from ltzoo.engine.objective import StageContext, get_method
from ltzoo.engine.trainer import Trainer
from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.supcon import supcon_loss
from ltzoo.models import build_model
from ltzoo.recipes.scl_rsg_ldam import synergy_variant
from ltzoo.registry import get_entry, list_models

FMNIST_COUNTS = (1000, 599, 359, 215, 129, 77, 46, 27, 16, 10)
SYNERGY = "scl_rsg_ldam_resnet32.fmnist_lt"


def _objective(epochs: int = 10, **method_args):
    recipe = get_entry(SYNERGY).recipe()
    recipe = recipe.replace(
        stages=[dataclasses.replace(recipe.stages[0], epochs=epochs, milestones=())],
        method_args={**recipe.method_args, **method_args},
    )
    info = dataclasses.replace(dataset_spec("fmnist_lt"), class_counts=FMNIST_COUNTS, train_size=sum(FMNIST_COUNTS))
    ctx = StageContext(recipe=recipe, stage=recipe.stages[0], stage_index=0, data=info, steps_per_epoch=1)
    model = build_model("resnet32", 10, in_chans=1, head=recipe.head)
    return get_method("scl_rsg_ldam")(model, ctx), model


def _batch(seed: int = 0):
    torch.manual_seed(seed)
    targets = torch.tensor([0, 1, 0, 5, 9, 1, 0, 7])  # 5 head (classes 0, 1), 3 tail
    return (torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)), targets


def _projection_rows(objective, batch, epoch) -> tuple[int, dict]:
    seen = []
    handle = objective.projection.register_forward_hook(lambda m, inputs, output: seen.append(inputs[0].shape[0]))
    out = objective.training_step(batch, epoch)
    handle.remove()
    return seen[0], out


def test_joint_step_combines_all_four_losses():
    objective, _ = _objective()  # generation and DRW from epoch 8 of 10
    assert objective.drw_epoch == 8 and objective.rsg.epoch_thresh == 7
    objective.on_epoch_start(9)
    rows, out = _projection_rows(objective, _batch(), epoch=9)
    logs = out.logs
    assert logs["generated"] == 3  # RSG works on view 1 only: 3 tail rows -> 3 generated maps
    assert rows == 16  # SupCon on the 2 x 8 real views; generated features are in the LDAM loss only
    expected = logs["cls"] + 0.5 * logs["supcon"] + 0.1 * logs["cesc"] + 0.01 * logs["mv"]
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    out.loss.backward()
    assert objective.rsg.rsg.vector_transform.weight.grad.abs().sum() > 0
    assert objective.projection.net[0].weight.grad.abs().sum() > 0


def test_generated_features_can_join_the_contrastive_term():
    objective, model = _objective(generated_in_supcon=True)
    rows, out = _projection_rows(objective, _batch(), epoch=9)
    assert rows == 16 + 3
    # Recompute the contrastive term on [view 1, generated, view 2] with labels [y, tail labels, y].
    # RSG's generation depends only on its own (unchanged) parameters and the batch, so a second
    # pass over the same inputs gives the same rows.
    (view1, view2), targets = _batch()
    fmap, rsg_out = objective.rsg(torch.cat([view1, view2]), targets, 9, rsg_rows=8)
    pooled = model.forward_head(fmap, pre_logits=True)
    labels = torch.cat([rsg_out.targets, targets])
    assert labels[8:11].tolist() == [5, 9, 7]
    expected = supcon_loss(objective.projection(pooled), labels, 0.1, 0.07)
    assert out.logs["supcon"] == pytest.approx(expected.item(), rel=1e-4)


def test_ablation_switches_remove_parts():
    no_scl, _ = _objective(supcon_weight=0.0)
    assert not hasattr(no_scl, "projection")
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    assert isinstance(no_scl.train_transform()(image), torch.Tensor)  # one view, no contrastive pass
    (view1, _), targets = _batch()
    assert "supcon" not in no_scl.training_step((view1, targets), 9).logs

    no_rsg, _ = _objective(use_rsg=False)
    assert not hasattr(no_rsg, "rsg")
    logs = no_rsg.training_step(_batch(), 9).logs
    assert "cesc" not in logs and set(logs) == {"cls", "supcon"}

    no_margin, _ = _objective(max_m=0.0)
    assert no_margin.criterion.margins.abs().sum() == 0

    with_views = _objective()[0].train_transform()(image)
    assert len(with_views) == 2


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"rsg_after_stage": 5}, "rsg_after_stage"),
        ({"supcon_weight": -1.0}, "supcon_weight"),
        ({"second_view": "strong"}, "second_view"),
        ({"supcon_temperature": 0.1}, "supcon_temperature"),
    ],
)
def test_bad_hyper_parameters(args, match):
    with pytest.raises(BadHyperParameterError, match=match):
        _objective(**args)


def test_zoo_names_and_notes():
    for method in ("ldam_drw", "scl", "rsg", "scl_rsg_ldam"):
        base = f"{method}_resnet32"
        assert get_entry(base).tag == "cifar100_lt"
        assert {f"{base}.fmnist_lt", f"{base}.cifar10_lt"} <= set(list_models(base))
        for arch in ("resnet50", "resnext50_32x4d"):
            assert get_entry(f"{method}_{arch}").tag == "imagenet_lt"
    assert get_entry("rsg_resnet50.inat2018").recipe().method_args["max_m"] == 0.1
    assert get_entry("rsg_resnet152.places_lt").recipe().stages[0].epochs == 30
    for name in list_models(["ldam_drw*", "rsg*", "scl_rsg_ldam*"]):
        assert get_entry(name).recipe().head == {"type": "cosine"}, name
    notes = get_entry(SYNERGY).recipe().notes
    for choice in ("generated_in_supcon", "0.5 SupCon", "0.1 CESC", "every choice below is ltzoo's"):
        assert choice in notes
    variant = synergy_variant(get_entry(SYNERGY).recipe(), use_rsg=False)
    assert variant.method_args["use_rsg"] is False and "use_rsg=False" in variant.notes


def test_fmnist_recipes_share_the_ce_epoch_budget():
    budget = sum(s.epochs for s in get_entry("ce_resnet32.fmnist_lt").recipe().stages)
    for method in ("ldam_drw", "scl", "rsg", "scl_rsg_ldam"):
        recipe = get_entry(f"{method}_resnet32.fmnist_lt").recipe()
        assert sum(s.epochs for s in recipe.stages) == budget, method


# ----- every recipe trains one short epoch on real fmnist_lt images --------------------------------
def _cap_per_class(dataset, cap: int) -> TensorImageDataset:
    targets = torch.tensor(dataset.targets)
    keep = torch.cat([torch.nonzero(targets == c).flatten()[:cap] for c in range(10)]).sort().values
    return TensorImageDataset(dataset.images[keep], targets[keep].tolist())


@pytest.fixture(scope="module")
def small_fmnist(fmnist) -> LTDataset:
    """fmnist_lt with train capped at 40 per class (still long-tailed: ..., 27, 16, 10), val/test at 5."""
    return LTDataset(
        name="fmnist_lt",
        train=_cap_per_class(fmnist.train, 40),
        val=_cap_per_class(fmnist.val, 5),
        test=_cap_per_class(fmnist.test, 5),
        label_names=fmnist.label_names,
        info=fmnist.info,
        index_sha256="test-subset-of-" + fmnist.index_sha256,
    )


@pytest.mark.parametrize("method", ["ldam_drw", "scl", "rsg", "scl_rsg_ldam"])
def test_recipe_trains_one_short_epoch_and_saves_a_loadable_model(method, small_fmnist, tmp_path):
    entry = get_entry(f"{method}_resnet32.fmnist_lt")
    recipe = entry.recipe()
    # One epoch of one step per stage at batch 32; the DRW / generation switches at epoch 0 so that
    # every part of the objective runs.
    stages = [dataclasses.replace(s, epochs=1, warmup_epochs=0, milestones=(), batch_size=32) for s in recipe.stages]
    switches = {k: 0.0 for k in ("drw_start_fraction", "rsg_start_fraction") if k in recipe.method_args}
    recipe = recipe.replace(stages=stages, method_args={**recipe.method_args, **switches})
    out = tmp_path / "run"
    metrics = Trainer(recipe, out, name=entry.name, data=small_fmnist, steps_per_epoch=1).run()

    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [line["stage"] for line in log] == [s.name for s in recipe.stages]
    if method in ("rsg", "scl_rsg_ldam"):
        assert log[0]["generated"] > 0
    model, config = ltzoo.load(f"local-dir:{out}", with_config=True)
    assert config["model_args"]["head"] == recipe.head
    # Inference weights only: no projection head, no RSG.
    plain = build_model("resnet32", 10, in_chans=1, head=recipe.head).state_dict()
    assert set(load_file(out / "model.safetensors")) == set(plain)
    # The loaded weights reproduce the run's own test evaluation.
    images = torch.stack(
        [eval_transform(small_fmnist.info)(small_fmnist.test[i][0]) for i in range(len(small_fmnist.test))]
    )
    with torch.no_grad():
        predictions = model(images).argmax(1)
    accuracy = 100.0 * (predictions == torch.tensor(small_fmnist.test.targets)).float().mean().item()
    assert accuracy == pytest.approx(metrics["test"]["all"], abs=1e-6)
