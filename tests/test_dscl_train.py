"""DSCL / DSCL + PBSD end to end: objectives, both stages, every recipe, loading, ONNX export."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

import ltzoo
from ltzoo.data import LTDataset, TensorImageDataset
from ltzoo.data.spec import dataset_spec
from ltzoo.engine.objective import StageContext, get_method
from ltzoo.engine.trainer import train
from ltzoo.errors import BadHyperParameterError, WeightsNotPublishedError
from ltzoo.methods.dscl import BalancedLinearClassifier, DSCLRepresentation
from ltzoo.models import build_model
from ltzoo.models.timm_layout import saved_state_dict, spec_from_config
from ltzoo.recipes.dscl import beta_to_alpha
from ltzoo.registry import get_entry, list_models

SMALL_NAMES = [f"{m}_resnet32.{t}" for m in ("dscl", "dscl_pbsd") for t in ("fmnist_lt", "cifar100_lt")]
PAPER_NAMES = [f"{m}_resnet50.{t}" for m in ("dscl", "dscl_pbsd") for t in ("imagenet_lt", "inat2018", "places_lt")]

pytestmark = pytest.mark.usefixtures("single_thread")  # conftest.py


def _subset(dataset: TensorImageDataset, count: int) -> TensorImageDataset:
    return TensorImageDataset(dataset.images[:count], dataset.targets[:count])


@pytest.fixture(scope="module")
def fmnist_small(fmnist) -> LTDataset:
    """The real fmnist_lt training set with the first 200 val / test images (fast evaluation)."""
    return LTDataset(
        fmnist.name,
        fmnist.train,
        _subset(fmnist.val, 200),
        _subset(fmnist.test, 200),
        fmnist.label_names,
        fmnist.info,
        fmnist.index_sha256,
    )


def _random_dataset(name: str, side: int, per_class: int = 1, classes: int | None = None) -> LTDataset:
    """Random images in the shape of a dataset that is not on this machine (CIFAR, ImageNet-LT ...):
    it exercises the recipe's code path, not its accuracy."""
    info = dataset_spec(name)
    torch.manual_seed(0)
    used = classes or info.num_classes
    targets = [c for c in range(used) for _ in range(per_class)]
    train_set = TensorImageDataset(
        torch.randint(0, 256, (len(targets), info.in_chans, side, side), dtype=torch.uint8), targets
    )
    evaluation = TensorImageDataset(
        torch.randint(0, 256, (4, info.in_chans, side, side), dtype=torch.uint8), [0, 1, 2, 3]
    )
    return LTDataset(name, train_set, evaluation, evaluation, [str(i) for i in range(info.num_classes)], info, "random")


def _small_batches(recipe, batch: int):
    """Tiny batches, and data loading in the test process (worker processes only cost start-up here)."""
    return recipe.replace(stages=[dataclasses.replace(s, batch_size=batch) for s in recipe.stages], num_workers=0)


def _context(recipe, stage_index: int, data: LTDataset) -> StageContext:
    return StageContext(
        recipe=recipe, stage=recipe.stages[stage_index], stage_index=stage_index, data=data.info, steps_per_epoch=1
    )


def _batch(objective, data: LTDataset, size: int):
    transform = objective.train_transform()
    samples = [transform(data.train[i][0]) for i in range(size)]
    views = [torch.stack(parts) for parts in zip(*samples)] if isinstance(samples[0], tuple) else torch.stack(samples)
    labels = torch.tensor([data.train[i][1] for i in range(size)])
    return views, labels


# ----- names and recipes ----------------------------------------------------------------------------
def test_zoo_names():
    assert set(list_models("dscl*")) == set(SMALL_NAMES + PAPER_NAMES)
    assert get_entry("dscl_pbsd_resnet50").name == "dscl_pbsd_resnet50.imagenet_lt"
    assert get_entry("dscl_pbsd_resnet32").name == "dscl_pbsd_resnet32.cifar100_lt"


@pytest.mark.parametrize("name", PAPER_NAMES)
def test_paper_recipes_follow_the_official_table(name):
    recipe = get_entry(name).recipe()
    first, second = recipe.stages
    assert (recipe.arch, first.name, second.name) == ("resnet50", "representation", "classifier")
    # main.py / train.sh
    assert (first.epochs, first.batch_size, first.lr, first.momentum, first.weight_decay) == (200, 256, 0.1, 0.9, 5e-4)
    assert (first.warmup_epochs, first.schedule, first.sampler, first.train) == (10, "cosine", "instance", "all")
    # equal_lincls.py / train_cls.sh
    assert (second.epochs, second.batch_size, second.lr, second.momentum, second.weight_decay) == (
        40,
        2048,
        10.0,
        0.9,
        0.0,
    )
    assert (second.schedule, second.milestones, second.gamma) == ("step", (20, 30), 0.1)
    assert (second.sampler, second.train, second.select_on_val) == ("class_balanced", "head", True)
    args = recipe.method_args
    assert args["alpha"] == pytest.approx(1 / 9) and args["alpha"] == beta_to_alpha(8.0)
    assert (args["temperature"], args["momentum"], args["queue_size"], args["proj_dim"]) == (0.07, 0.999, 65536, 128)
    assert args["pbsd_weight"] == (1.5 if name.startswith("dscl_pbsd") else 0.0)
    assert args["num_patches"] == 5
    assert args["classifier_augment"] == "official"  # equal_lincls.py's RandomResizedCrop probe


def test_fmnist_recipes_spend_the_ce_budget():
    ce = get_entry("ce_resnet32.fmnist_lt").recipe()
    for name in ("dscl_resnet32.fmnist_lt", "dscl_pbsd_resnet32.fmnist_lt"):
        recipe = get_entry(name).recipe()
        assert sum(s.epochs for s in recipe.stages) == sum(s.epochs for s in ce.stages)
        assert recipe.stages[0].batch_size == ce.stages[0].batch_size


def test_flagship_builds_and_exports_to_checked_onnx(tmp_path):
    from ltzoo.export.metadata import ModelInfo
    from ltzoo.export.pipeline import ExportOptions, export

    model = ltzoo.load("dscl_pbsd_resnet50", pretrained=False)
    assert not model.training and model.num_classes == 1000 and model.num_features == 2048
    # torchvision/timm ResNet-50 trunk (23.5M) + a 2048 x 1000 linear classifier; no projection head
    assert sum(p.numel() for p in model.parameters()) == 23_508_032 + 2048 * 1000 + 1000
    spec = dataset_spec("imagenet_lt")
    info = ModelInfo(
        name="dscl_pbsd_resnet50.imagenet_lt",
        arch="resnet50",
        num_classes=1000,
        input_size=(3, 224, 224),
        mean=spec.mean,
        std=spec.std,
        label_names=[str(i) for i in range(1000)],
        dataset="imagenet_lt",
    )
    report = export((model, info), tmp_path / "onnx", ExportOptions(verify="parity"))
    assert report.passed and report.failures == []
    checks = report.variants["fp32"].checks
    assert all(check.passed for check in checks.values()), checks
    assert {"graph", "io", "parity"} <= set(checks)


def test_pretrained_load_says_how_to_train():
    with pytest.raises(WeightsNotPublishedError, match=r"ltzoo train dscl_pbsd_resnet50\.imagenet_lt --out"):
        ltzoo.load("dscl_pbsd_resnet50")


# ----- objectives -------------------------------------------------------------------------------------
def test_momentum_encoder_gets_no_gradients_and_follows_the_query_encoder(fmnist_small):
    recipe = get_entry("dscl_pbsd_resnet32.fmnist_lt").recipe()
    model = build_model("resnet32", 10, in_chans=1)
    objective = get_method(recipe.method)(model, _context(recipe, 0, fmnist_small))
    assert isinstance(objective, DSCLRepresentation)
    views, labels = _batch(objective, fmnist_small, 6)
    # The loader yields uint8 views and boxes; the patches are cut and augmented in the step, per batch.
    assert [tuple(v.shape) for v in views] == [(6, 1, 28, 28), (6, 1, 28, 28), (6, 5, 4)]
    assert views[0].dtype == torch.uint8
    augmented = objective._photometric(views)
    assert [tuple(v.shape) for v in augmented] == [(6, 1, 28, 28), (6, 1, 28, 28), (6, 5, 1, 14, 14), (6, 5, 4)]
    assert all(v.dtype == torch.float32 for v in augmented)
    key_before = [p.clone() for p in objective.key_encoder.parameters()]
    out = objective.training_step((views, labels), 0)
    assert set(out.logs) >= {"dscl", "pbsd"}
    out.loss.backward()
    assert all(p.grad is None for p in objective.key_encoder.parameters())
    assert all(p.grad is not None for p in objective.projector.parameters())
    assert model.backbone.stem[0].weight.grad is not None
    # the optimiser never sees the key encoder; its EMA step moves it towards the query encoder
    optimised = {id(p) for group in objective.param_groups() for p in group["params"]}
    assert not optimised & {id(p) for p in objective.key_encoder.parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    objective.after_optimizer_step()
    key_stem = objective.key_encoder.encoder.model.backbone.stem[0].weight
    assert torch.allclose(key_stem, 0.99 * key_before[0] + 0.01 * model.backbone.stem[0].weight, atol=1e-6)
    # the queue holds this step's keys with their labels
    assert int(objective.queue.filled) == 6 and objective.queue.labels[:6].tolist() == labels.tolist()
    # training-only state is the objective's, never the model's
    assert not any(k.startswith(("projector", "key_encoder", "queue")) for k in model.state_dict())
    assert any(k.startswith("key_encoder.") for k in objective.state_dict())


def test_classifier_stage_checks_its_config(fmnist_small):
    recipe = get_entry("dscl_resnet32.fmnist_lt").recipe()
    model = build_model("resnet32", 10, in_chans=1)
    assert isinstance(get_method("dscl")(model, _context(recipe, 1, fmnist_small)), BalancedLinearClassifier)
    wrong = recipe.replace(stages=[recipe.stages[0], dataclasses.replace(recipe.stages[1], train="all")])
    with pytest.raises(BadHyperParameterError, match="train='head'"):
        get_method("dscl")(model, _context(wrong, 1, fmnist_small))
    renamed = recipe.replace(stages=[dataclasses.replace(recipe.stages[0], name="main")])
    with pytest.raises(BadHyperParameterError, match="'representation' and 'classifier'"):
        get_method("dscl")(model, _context(renamed, 0, fmnist_small))
    bad_args = recipe.replace(method_args={**recipe.method_args, "beta": 8.0})
    with pytest.raises(BadHyperParameterError, match="unknown DSCL method_args"):
        get_method("dscl")(model, _context(bad_args, 0, fmnist_small))
    # a stage-2 setting is checked when stage 1 starts, not after it
    bad_augment = recipe.replace(method_args={**recipe.method_args, "classifier_augment": "strong"})
    with pytest.raises(BadHyperParameterError, match=r"classifier_augment 'strong'.*'official', 'standard'"):
        get_method("dscl")(model, _context(bad_augment, 0, fmnist_small))
    bad_alpha = recipe.replace(method_args={**recipe.method_args, "alpha": 8.0})  # beta given as alpha
    with pytest.raises(BadHyperParameterError, match=r"alpha must be in \(0, 1\]"):
        get_method("dscl")(model, _context(bad_alpha, 0, fmnist_small))


def test_small_recipes_probe_on_the_standard_augmentation(fmnist_small):
    """The ResNet-32 recipes train stage 2 on the dataset's own augmentation (pad-crop + flip), the paper
    recipes on equal_lincls.py's RandomResizedCrop + photometrics (see dscl_views.classifier_view)."""
    from ltzoo.data.transforms import train_transform

    model = build_model("resnet32", 10, in_chans=1)
    small = get_entry("dscl_pbsd_resnet32.fmnist_lt").recipe()
    assert small.method_args["classifier_augment"] == "standard"
    standard = get_method("dscl_pbsd")(model, _context(small, 1, fmnist_small)).train_transform()
    official_recipe = small.replace(method_args={**small.method_args, "classifier_augment": "official"})
    official = get_method("dscl_pbsd")(model, _context(official_recipe, 1, fmnist_small)).train_transform()
    image = fmnist_small.train[0][0]
    torch.manual_seed(0)
    expected = train_transform(fmnist_small.info)(image)
    torch.manual_seed(0)
    assert torch.equal(standard(image), expected)
    # the official probe view draws a RandomResizedCrop: over a few draws it leaves the standard family
    torch.manual_seed(0)
    assert any(not torch.equal(official(image), train_transform(fmnist_small.info)(image)) for _ in range(4))
    assert expected.shape == official(image).shape == (1, 28, 28)


def test_stage2_leaves_the_backbone_unchanged(tmp_path, fmnist_small):
    recipe = get_entry("dscl_resnet32.fmnist_lt").recipe()
    classifier_only = recipe.replace(stages=[recipe.stages[1]], num_workers=0)
    torch.manual_seed(0)
    model = build_model("resnet32", 10, in_chans=1)
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}  # BN buffers included
    head_before = model.head.weight.clone()
    train(classifier_only, tmp_path / "run", data=fmnist_small, model=model, epochs=1, steps_per_epoch=3)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, backbone_before[key]), f"stage 2 changed {key}"
    assert not torch.equal(model.head.weight, head_before)
    assert model.head.bias.abs().max() > 0  # trained from the official zero init


# ----- every recipe, a short run each ------------------------------------------------------------------
def _data_for(name: str, fmnist_small: LTDataset) -> LTDataset:
    tag = name.split(".")[1]
    if tag == "fmnist_lt":
        return fmnist_small
    if tag == "cifar100_lt":
        return _random_dataset(tag, 32)
    return _random_dataset(tag, 40, classes=8)


# The ResNet-50 recipes differ only in their dataset tag (checked against the official table above),
# so one of them (the flagship) runs here: a ResNet-50 step at 224 px costs seconds on a CPU.
@pytest.mark.parametrize("name", SMALL_NAMES + ["dscl_pbsd_resnet50.imagenet_lt"])
def test_one_short_epoch_trains_and_saves_a_loadable_model(name, tmp_path, fmnist_small):
    entry = get_entry(name)
    recipe = _small_batches(entry.recipe(), 4 if entry.arch == "resnet50" else 16)
    data = _data_for(name, fmnist_small)
    out = tmp_path / "run"
    train(recipe, out, name=entry.name, data=data, epochs=2, steps_per_epoch=1)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert {line["stage"] for line in log} == {"representation", "classifier"}
    representation = [line for line in log if line["stage"] == "representation"]
    assert all(("pbsd" in line) == name.startswith("dscl_pbsd") for line in representation)
    saved = load_file(str(out / "model.safetensors"))
    model, config = ltzoo.load(f"local-dir:{out}", with_config=True)
    # Inference weights only (no projector, key encoder or queue), under the saved layout's names.
    assert set(saved) == set(saved_state_dict(model.state_dict(), spec_from_config(config)))
    assert ("fc.weight" in saved) == (entry.arch == "resnet50")  # a linear-head ResNet-50 is timm's own model
    assert config["ltzoo"]["method"] == recipe.method and not model.training
    images = torch.randn(2, data.info.in_chans, *data.info.input_size)
    assert model(images).shape == (2, data.num_classes)


# ----- the frozen backbone's BatchNorm during the stage-2 probe (probe_bn) ---------------------------
def test_reestimated_batchnorm_is_the_average_of_the_batch_statistics():
    from ltzoo.models.batchnorm import reestimate_batchnorm

    torch.manual_seed(0)
    backbone = build_model("resnet32", 10, in_chans=1).backbone
    batches = [torch.randn(16, 1, 28, 28) * (1 + i) + i for i in range(3)]
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # In train mode every BN normalises with its batch's statistics, so its inputs do not depend on the
    # running statistics: record each BN's input mean and unbiased variance per batch.
    seen = {norm: [] for norm in norms}
    hooks = [
        norm.register_forward_pre_hook(
            lambda m, args: seen[m].append((args[0].mean(dim=(0, 2, 3)), args[0].var(dim=(0, 2, 3), unbiased=True)))
        )
        for norm in norms
    ]
    backbone.train()
    with torch.no_grad():
        for batch in batches:
            backbone(batch)
    for hook in hooks:
        hook.remove()
    backbone.eval()
    assert reestimate_batchnorm(backbone, iter(batches)) == 3
    for norm in norms:
        means, variances = zip(*seen[norm])
        torch.testing.assert_close(norm.running_mean, torch.stack(means).mean(0), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(norm.running_var, torch.stack(variances).mean(0), rtol=1e-4, atol=1e-5)
        assert norm.momentum == 0.1 and not norm.training  # restored


@pytest.fixture(scope="module")
def probe_bn_runs(fmnist_small, tmp_path_factory):
    """A tiny DSCL + PBSD run per probe_bn mode, and the same recipe's stage 1 alone (what stage 2 starts from)."""
    base = _small_batches(get_entry("dscl_pbsd_resnet32.fmnist_lt").recipe(), 32)
    base = base.replace(stages=[dataclasses.replace(s, epochs=1, warmup_epochs=0, milestones=()) for s in base.stages])
    root = tmp_path_factory.mktemp("probe_bn")
    runs = {"root": root, "base": base}
    for mode in ("train", "frozen", "reestimate"):
        recipe = base.replace(method_args={**base.method_args, "probe_bn": mode})
        train(recipe, root / mode, data=fmnist_small, steps_per_epoch=2)
        runs[mode] = load_file(root / mode / "model.safetensors")
    stage1 = base.replace(stages=base.stages[:1])
    train(stage1, root / "stage1", data=fmnist_small, steps_per_epoch=2)
    runs["stage1"] = load_file(root / "stage1" / "model.safetensors")
    return runs


@pytest.mark.slow
def test_a_branch_after_stage_one_ends_where_the_full_run_ends(probe_bn_runs, fmnist_small):
    from ltzoo.engine.branch import branch_from_stage
    from ltzoo.errors import LtzooError

    root, base = probe_bn_runs["root"], probe_bn_runs["base"]
    frozen = base.replace(method_args={**base.method_args, "probe_bn": "frozen"})
    record = branch_from_stage(root / "train", frozen, root / "branch", "representation")
    assert record == {"stage": "representation", "source_run": "train"}
    train(frozen, root / "branch", data=fmnist_small, steps_per_epoch=2, resume=True)
    branched = load_file(root / "branch" / "model.safetensors")
    assert all(torch.equal(branched[k], probe_bn_runs["frozen"][k]) for k in branched)
    # Anything stage 1 reads must match: another temperature is a new stage 1, not a branch.
    hotter = frozen.replace(method_args={**frozen.method_args, "temperature": 0.2})
    with pytest.raises(LtzooError, match=r"method_args.temperature"):
        branch_from_stage(root / "train", hotter, root / "bad", "representation")


def _backbone_split(state):
    stats = {k: v for k, v in state.items() if k.startswith("backbone.") and ("running_" in k)}
    weights = {k: v for k, v in state.items() if k.startswith("backbone.") and k.endswith(("weight", "bias"))}
    return stats, weights


@pytest.mark.slow
@pytest.mark.parametrize("mode,stats_move", [("train", True), ("frozen", False), ("reestimate", True)])
def test_probe_bn_modes_move_the_statistics_not_the_weights(probe_bn_runs, mode, stats_move):
    stats, weights = _backbone_split(probe_bn_runs[mode])
    start_stats, start_weights = _backbone_split(probe_bn_runs["stage1"])
    assert all(torch.equal(weights[k], start_weights[k]) for k in weights), "stage 2 changed the frozen backbone"
    moved = [k for k in stats if not torch.equal(stats[k], start_stats[k])]
    assert bool(moved) == stats_move, moved[:3]
    if mode == "reestimate":
        assert len(moved) == len(stats)  # every BN of the backbone was re-estimated


@pytest.mark.slow
def test_reestimated_statistics_are_a_fresh_estimate_on_the_standard_augmentation(probe_bn_runs, fmnist_small):
    """probe_bn="reestimate": the saved running statistics are what a new pass over the standard-augmented
    training set gives the stage-1 backbone, not stage 1's (patch-mixed) statistics. The run's own pass drew
    its own crops and order, so the two estimates agree to sampling noise, not to the bit."""
    from ltzoo.data.transforms import train_transform
    from ltzoo.models.batchnorm import reestimate_batchnorm

    model = ltzoo.load(f"local-dir:{probe_bn_runs['root'] / 'stage1'}")
    transform, train_set = train_transform(fmnist_small.info), fmnist_small.train
    torch.manual_seed(1)
    order = torch.randperm(len(train_set)).tolist()
    batches = (
        torch.stack([transform(train_set[i][0]) for i in order[start : start + 32]])
        for start in range(0, len(order) - 31, 32)
    )
    assert reestimate_batchnorm(model.backbone, batches, model.forward_features) == len(order) // 32
    fresh, _ = _backbone_split(model.state_dict())
    saved, _ = _backbone_split(probe_bn_runs["reestimate"])
    stage1, _ = _backbone_split(probe_bn_runs["stage1"])
    assert set(fresh) == set(saved)
    gap_to_fresh = torch.stack(
        [(saved[k] - fresh[k]).abs().mean() / fresh[k].abs().mean().clamp_min(1e-3) for k in fresh]
    )
    stage1_to_fresh = torch.stack(
        [(stage1[k] - fresh[k]).abs().mean() / fresh[k].abs().mean().clamp_min(1e-3) for k in fresh]
    )
    assert gap_to_fresh.max() < 0.05, gap_to_fresh.max()  # the same estimate, up to the crops drawn
    assert stage1_to_fresh.median() > 10 * gap_to_fresh.median()  # and not what stage 1 left behind


def test_probe_bn_is_checked_before_stage_one():
    recipe = get_entry("dscl_pbsd_resnet32.fmnist_lt").recipe()
    bad = recipe.replace(method_args={**recipe.method_args, "probe_bn": "eval"})
    with pytest.raises(BadHyperParameterError, match="probe_bn 'eval': choose one of"):
        DSCLRepresentation(build_model("resnet32", 10, in_chans=1), _context(bad, 0, _random_dataset("fmnist_lt", 28)))
