"""RSG: the module (centre estimation, contrastive module, vector transformation, generation,
CESC/MV, epoch_thresh), its insertion after a backbone stage, and proof that saved and exported
models carry no RSG weights."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

import ltzoo
from ltzoo.data import LTDataset, TensorImageDataset
from ltzoo.data.spec import dataset_spec
from ltzoo.engine.objective import StageContext, get_method
from ltzoo.engine.trainer import Trainer
from ltzoo.errors import BadHyperParameterError
from ltzoo.models import build_model
from ltzoo.models.rsg import RSG, head_classes_by_count
from ltzoo.registry import get_entry

FMNIST_COUNTS = (1000, 599, 359, 215, 129, 77, 46, 27, 16, 10)


def _identity_transform(rsg: RSG, factor: float = 1.0) -> None:
    """Make T(v) = factor * v: a 3x3 conv whose kernel is factor at the centre of the diagonal."""
    with torch.no_grad():
        rsg.vector_transform.weight.zero_()
        rsg.vector_transform.bias.zero_()
        for c in range(rsg.channels):
            rsg.vector_transform.weight[c, c, 1, 1] = factor


def _constant_pair_classifier(rsg: RSG) -> None:
    """Make the contrastive module predict logits (0, 0) for every pair: CE = log 2."""
    with torch.no_grad():
        rsg.pair_classifier.fc.weight.zero_()
        rsg.pair_classifier.fc.bias.zero_()


def test_head_classes_by_count():
    assert head_classes_by_count([5, 50, 50, 1, 20], head_ratio=0.4) == [1, 2]
    assert head_classes_by_count([5, 50, 50, 1, 20], head_ratio=0.2) == [1]  # tie -> lower index
    # Sorted CIFAR-LT: the official range(int(C * 0.2)).
    assert head_classes_by_count([500, 300, 200, 100, 60, 40, 20, 10, 7, 5], 0.2) == [0, 1]
    with pytest.raises(BadHyperParameterError, match="head_ratio"):
        head_classes_by_count([5, 4, 3], head_ratio=0.1)  # int(0.3) = 0 head classes


def test_centre_loss_and_pair_term_hand_computed():
    rsg = RSG(num_classes=2, channels=1, head_classes=[0], n_center=2, contrastive_dim=4, epoch_thresh=5)
    _constant_pair_classifier(rsg)
    with torch.no_grad():
        rsg.assign_weight.zero_()  # gamma = softmax(bias)
        rsg.assign_bias.copy_(torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]]))
        rsg.centres.copy_(torch.tensor([[[1.0], [3.0]], [[1.0], [0.0]]]))
    fmap = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[2.0, 2.0], [2.0, 2.0]]]])
    targets = torch.tensor([0, 1])
    # sample 0 (class 0): gamma = (1/4, 3/4); distances to centres 1 and 3: 0+1+4+9 = 14 and 4+1+0+1 = 6
    #   -> 14/4 + 6*3/4 = 8
    # sample 1 (class 1): gamma = (1/2, 1/2); distances to centres 1 and 0: 4 and 16 -> 10
    centre_term = (8.0 + 10.0) / 2
    early = rsg(fmap, targets, epoch=5)  # epoch <= epoch_thresh: + CE of one pair with logits (0, 0)
    assert early.cesc.item() == pytest.approx(centre_term + math.log(2), rel=1e-6)
    late = rsg(fmap, targets, epoch=6)
    assert late.cesc.item() == pytest.approx(centre_term, rel=1e-6)


def test_mv_loss_hand_computed():
    rsg = RSG(num_classes=2, channels=2, head_classes=[0], n_center=1, contrastive_dim=4, epoch_thresh=0)
    _constant_pair_classifier(rsg)
    _identity_transform(rsg)
    head = torch.tensor([[[[3.0]], [[4.0]]]])  # (1, 2, 1, 1), centres are zero: v = (3, 4)
    tail = torch.tensor([[[[1.0]], [[0.0]]]])
    generated, mv = rsg.transfer(head, torch.tensor([0]), tail, torch.tensor([1]))
    assert generated.flatten().tolist() == pytest.approx([4.0, 4.0])  # tail + T(v)
    # CE("different") = log 2; norm term |5 - 5| = 0; alignment: n(tail) = (1, 0), n(T v) = (0.6, 0.8):
    # |0.6 - 1| + |0 - 1| = 1.4; divided by one tail sample.
    assert mv.item() == pytest.approx(math.log(2) + 1.4, rel=1e-6)
    _identity_transform(rsg, factor=2.0)  # ||T v|| = 10 vs ||v|| = 5, same direction
    _, mv = rsg.transfer(head, torch.tensor([0]), tail, torch.tensor([1]))
    assert mv.item() == pytest.approx(math.log(2) + 5.0 + 1.4, rel=1e-6)


def test_mv_trains_transform_but_not_the_frozen_contrastive_module():
    torch.manual_seed(0)
    rsg = RSG(num_classes=3, channels=4, head_classes=[0], n_center=2, contrastive_dim=8, epoch_thresh=0)
    head, tail = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    _, mv = rsg.transfer(head, torch.tensor([0, 0]), tail, torch.tensor([1, 2]))
    mv.backward()
    assert rsg.vector_transform.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in rsg.pair_classifier.parameters())
    assert rsg.centres.grad is None  # centres are picked without gradient in MV


def test_generation_appends_tail_maps_with_tail_labels():
    torch.manual_seed(0)
    rsg = RSG(num_classes=5, channels=2, head_classes=[0], n_center=1, contrastive_dim=4, epoch_thresh=2)
    _identity_transform(rsg)  # centres are zero: generated = tail + head
    fmap = torch.randn(6, 2, 3, 3, requires_grad=True)
    targets = torch.tensor([0, 3, 0, 4, 0, 0])  # 4 head, 2 tail -> segment int(4 / 2) = 2

    before = rsg(fmap, targets, epoch=2)  # epoch <= epoch_thresh: nothing generated
    assert before.num_generated == 0 and before.features.shape[0] == 6 and before.mv.item() == 0.0
    assert torch.equal(before.targets, targets)

    out = rsg(fmap, targets, epoch=3)
    assert out.num_generated == 4
    assert out.targets.tolist() == [0, 3, 0, 4, 0, 0, 3, 4, 3, 4]
    assert not torch.isin(out.targets[6:], torch.tensor([0])).any(), "generated maps must carry tail labels"
    maps = fmap.detach()
    # segment 0 pairs heads (0, 2) with tails (1, 3); segment 1 pairs heads (4, 5) with tails (1, 3).
    expected = torch.stack([maps[1] + maps[0], maps[3] + maps[2], maps[1] + maps[4], maps[3] + maps[5]])
    assert torch.allclose(out.features[6:], expected, atol=1e-6)
    assert torch.equal(out.features[:6], fmap)  # the original maps keep their gradient path
    # CESC and MV never reach the backbone: only the original rows carry the classifier's gradient.
    (out.cesc + out.mv).backward()
    assert fmap.grad is None


def test_more_tails_than_heads():
    rsg = RSG(num_classes=7, channels=2, head_classes=[0], n_center=1, contrastive_dim=4, epoch_thresh=-1)
    targets = torch.tensor([0, 3, 4, 5, 6])  # 1 head, 4 tails -> segment 4, one copy per tail
    out = rsg(torch.randn(5, 2, 2, 2), targets, epoch=0)
    assert out.targets[5:].tolist() == [3, 4, 5, 6]


def test_no_generation_without_head_or_tail_in_batch():
    rsg = RSG(num_classes=3, channels=2, head_classes=[0], n_center=1, contrastive_dim=4, epoch_thresh=-1)
    out = rsg(torch.randn(4, 2, 2, 2), torch.tensor([1, 2, 1, 2]), epoch=0)
    assert out.num_generated == 0 and out.mv.item() == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_center": 0},
        {"transfer_strength": 0.0},
        {"epoch_thresh": -2},
        {"head_classes": [0, 1, 2]},
        {"head_classes": [5]},
    ],
)
def test_bad_hyper_parameters(kwargs):
    args = {"num_classes": 3, "channels": 2, "head_classes": [0]} | kwargs
    with pytest.raises(BadHyperParameterError):
        RSG(**args)


# ----- RSG inside the objective ---------------------------------------------------------------
def _rsg_objective(epochs: int = 10, **method_args):
    recipe = get_entry("rsg_resnet32.fmnist_lt").recipe()
    recipe = recipe.replace(
        stages=[dataclasses.replace(recipe.stages[0], epochs=epochs, milestones=())],
        method_args={**recipe.method_args, **method_args},
    )
    info = dataclasses.replace(dataset_spec("fmnist_lt"), class_counts=FMNIST_COUNTS, train_size=sum(FMNIST_COUNTS))
    ctx = StageContext(recipe=recipe, stage=recipe.stages[0], stage_index=0, data=info, steps_per_epoch=1)
    model = build_model("resnet32", 10, in_chans=1, head=recipe.head)
    return get_method("rsg")(model, ctx), model


@pytest.mark.parametrize("after", [0, 4, "layer2"])
def test_insertion_stage_that_does_not_exist(after):
    with pytest.raises(BadHyperParameterError, match=r"rsg_after_stage.*stages 1\.\.3"):
        _rsg_objective(rsg_after_stage=after)


def test_official_settings_reach_the_module():
    objective, _ = _rsg_objective(epochs=200)
    rsg = objective.rsg.rsg
    assert objective.rsg.epoch_thresh == 159  # official CIFAR: generate from epoch 160 of 200
    assert rsg.channels == 32  # after layer2 of ResNet-32
    assert rsg.n_center == 15 and rsg.centres.shape == (10, 15, 32)
    assert rsg.head_classes.tolist() == [0, 1]  # int(10 * 0.2) most frequent classes
    assert objective.hparams["cesc_weight"] == 0.1 and objective.hparams["mv_weight"] == 0.01
    # The objective's own state is RSG's alone: no backbone weights ride along in checkpoints.
    assert all(key.startswith("rsg.rsg.") for key in objective.state_dict())


def test_inserted_forward_equals_the_model_until_generation_starts():
    torch.manual_seed(0)
    objective, model = _rsg_objective(epochs=10)  # epoch_thresh 7
    model.eval()
    images, targets = torch.randn(8, 1, 28, 28), torch.tensor([0, 1, 0, 5, 9, 1, 0, 7])
    with torch.no_grad():
        fmap, out = objective.rsg(images, targets, epoch=7)
        assert out.num_generated == 0
        assert torch.allclose(fmap, model.forward_features(images), atol=1e-5)
        fmap, out = objective.rsg(images, targets, epoch=8)
    # 5 head samples (classes 0, 1) and 3 tail samples: segment int(5 / 3) = 1, one copy per tail.
    assert out.num_generated == 3 and fmap.shape[0] == 11
    assert out.targets[8:].tolist() == [5, 9, 7]


def test_training_step_adds_cesc_and_mv_with_official_weights():
    torch.manual_seed(0)
    objective, _ = _rsg_objective(epochs=10)
    images, targets = torch.randn(8, 1, 28, 28), torch.tensor([0, 1, 0, 5, 9, 1, 0, 7])
    out = objective.training_step((images, targets), epoch=9)
    logs = out.logs
    assert logs["generated"] == 3 and logs["mv"] > 0
    assert out.loss.item() == pytest.approx(logs["cls"] + 0.1 * logs["cesc"] + 0.01 * logs["mv"], rel=1e-5)
    out.loss.backward()
    assert objective.rsg.rsg.vector_transform.weight.grad.abs().sum() > 0


def _cap_per_class(dataset, cap: int) -> TensorImageDataset:
    targets = torch.tensor(dataset.targets)
    keep = torch.cat([torch.nonzero(targets == c).flatten()[:cap] for c in range(10)]).sort().values
    return TensorImageDataset(dataset.images[keep], targets[keep].tolist())


@pytest.fixture(scope="module")
def rsg_run(fmnist, tmp_path_factory):
    """A real rsg_resnet32.fmnist_lt run (one step, generation on) on a small real subset of fmnist_lt."""
    small = LTDataset(
        name="fmnist_lt",
        train=_cap_per_class(fmnist.train, 40),
        val=_cap_per_class(fmnist.val, 5),
        test=_cap_per_class(fmnist.test, 5),
        label_names=fmnist.label_names,
        info=fmnist.info,
        index_sha256="test-subset-of-" + fmnist.index_sha256,
    )
    entry = get_entry("rsg_resnet32.fmnist_lt")
    recipe = entry.recipe()
    recipe = recipe.replace(
        stages=[dataclasses.replace(recipe.stages[0], epochs=1, warmup_epochs=0, milestones=(), batch_size=64)],
        method_args={**recipe.method_args, "rsg_start_fraction": 0.0},
    )  # generate at once
    out = tmp_path_factory.mktemp("rsg") / "run"
    Trainer(recipe, out, name=entry.name, data=small, steps_per_epoch=1).run()
    return out, small


def test_saved_model_has_no_rsg_weights(rsg_run):
    out, _ = rsg_run
    saved = load_file(out / "model.safetensors")
    plain = build_model("resnet32", 10, in_chans=1, head={"type": "cosine"}).state_dict()
    assert set(saved) == set(plain)
    assert not [key for key in saved if "rsg" in key.lower() or "centre" in key or "pair" in key]
    log = (out / "train_log.jsonl").read_text()
    assert '"generated": ' in log and '"generated": 0.0' not in log  # RSG really generated in that run
    model = ltzoo.load(f"local-dir:{out}")
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for k, p in plain.items() if "running" not in k and "num_batches" not in k
    )


def test_exported_graph_has_no_rsg_weights(rsg_run, tmp_path):
    onnx_export = pytest.importorskip("ltzoo.export.onnx_export")
    out, small = rsg_run
    model = ltzoo.load(f"local-dir:{out}")
    path = tmp_path / "model.onnx"
    onnx_export.export_onnx(model, path, (1, 28, 28), exporter="torchscript")
    proto = onnx.load(str(path))
    names = [init.name.lower() for init in proto.graph.initializer]
    assert not [n for n in names if "rsg" in n or "centre" in n or "pair" in n]
    # Every weight in the graph is the classifier's (BN folded into convs): no room for RSG's
    # ~640k parameters next to ResNet-32's ~0.46M.
    graph_params = sum(int(np.prod(init.dims)) for init in proto.graph.initializer)
    model_params = sum(p.numel() for p in model.parameters())
    assert graph_params <= model_params
    images = torch.randn(3, 1, 28, 28)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": images.numpy()})
    with torch.no_grad():
        assert np.allclose(logits, model(images).numpy(), atol=1e-4)


# ----- recipes against the official train scripts ---------------------------------------------------
OFFICIAL_DRS_EPOCH = {
    "rsg_resnext50_32x4d.imagenet_lt": 80,
    "rsg_resnet50.imagenet_lt": 80,
    "rsg_resnet50.inat2018": 140,
    "rsg_resnet152.places_lt": 10,
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_DRS_EPOCH))
def test_large_recipes_resample_with_the_official_sampler_from_the_official_epoch(name):
    from ltzoo.methods.ldam_drw import start_epoch

    recipe = get_entry(name).recipe()
    args = recipe.method_args
    # ``if epoch == 80: train_sampler = ImbalancedDatasetSampler(...)`` (0-indexed epochs), no DRW.
    assert start_epoch(args["drs_start_fraction"], recipe.stages[0].epochs, "drs") == OFFICIAL_DRS_EPOCH[name]
    assert args["drs_sampler"] == "effective_number" and args["drw_start_fraction"] is None


def test_cifar_recipes_reweight_and_never_resample():
    for name in ("rsg_resnet32.cifar100_lt", "rsg_resnet32.cifar10_lt", "rsg_resnet32.fmnist_lt"):
        args = get_entry(name).recipe().method_args
        assert args["drs_start_fraction"] is None and args["drw_start_fraction"] == 0.8, name


def _official_lr_factor(script: str, epoch: int) -> float:
    """``adjust_learning_rate`` of the official scripts (Jianf-Wang/RSG), as a factor of ``args.lr``;
    ``epoch`` is the 0-indexed loop variable, which every script shifts by one first."""
    epoch = epoch + 1
    if script == "cifar_train":
        if epoch <= 5:
            return epoch / 5
        return 0.0001 if epoch > 179 else 0.01 if epoch > 159 else 1.0
    if script == "places_train":
        return 0.01 if epoch > 19 else 0.1 if epoch > 9 else 1.0
    drops = {"imagenet_lt_train": (94, 79, 59), "inaturalist_train": (169, 139, 99)}[script]
    for factor, after in zip((0.001, 0.01, 0.1), drops):
        if epoch > after:
            return factor
    return epoch / 5 if epoch <= 5 else 1.0


@pytest.mark.parametrize(
    "name, script",
    [
        ("rsg_resnet32.cifar100_lt", "cifar_train"),
        ("rsg_resnext50_32x4d.imagenet_lt", "imagenet_lt_train"),
        ("rsg_resnet50.inat2018", "inaturalist_train"),
        ("rsg_resnet152.places_lt", "places_train"),
    ],
)
def test_lr_schedule_equals_the_official_one_epoch_by_epoch(name, script):
    from ltzoo.engine.schedule import lr_factor

    stage = get_entry(name).recipe().stages[0]
    steps = 7
    for epoch in range(stage.epochs):
        official = _official_lr_factor(script, epoch)
        # ltzoo warms up per step; its last warmup step of each epoch reaches the official epoch value.
        assert lr_factor(stage, epoch, steps - 1, steps) == pytest.approx(official), epoch
        if epoch >= stage.warmup_epochs:
            assert all(lr_factor(stage, epoch, step, steps) == pytest.approx(official) for step in range(steps))
