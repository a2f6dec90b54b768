"""ICCL through the real trainer on real fmnist_lt: lockstep samplers, stage 2, resume, saved model.

Runs are tiny (batch 16, 2 steps per epoch) and val/test are cut to 10 images per class so that
evaluation stays fast; the train split is the real long-tailed one.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest
import torch

import ltzoo
from ltzoo.data import TensorImageDataset, build_dataset
from ltzoo.engine.objective import StageContext
from ltzoo.engine.trainer import Trainer, train
from ltzoo.errors import BadHyperParameterError
from ltzoo.methods.iccl import ClassifierRebalancing, ICCLRepresentation, iccl
from ltzoo.models import build_model
from ltzoo.recipes.iccl import REPRESENTATION_LR_FACTOR, iccl_fmnist_lt, iccl_variant
from ltzoo.registry import get_entry
from ltzoo.runs import load_state_dict_file

BATCH = 16


def _first_per_class(split: TensorImageDataset, per_class: int) -> TensorImageDataset:
    taken: dict[int, int] = {}
    keep = []
    for index, target in enumerate(split.targets):
        if taken.get(target, 0) < per_class:
            taken[target] = taken.get(target, 0) + 1
            keep.append(index)
    return TensorImageDataset(split.images[keep], [split.targets[i] for i in keep])


@pytest.fixture(scope="module")
def fmnist():
    data = build_dataset("fmnist_lt")
    return dataclasses.replace(data, val=_first_per_class(data.val, 10), test=_first_per_class(data.test, 10))


def _small(recipe, batch_size: int = BATCH):
    return recipe.replace(stages=[dataclasses.replace(s, batch_size=batch_size) for s in recipe.stages])


# ----- recipes ------------------------------------------------------------------------------------


def test_zoo_names_and_fmnist_budget() -> None:
    assert get_entry("iccl_resnet32").tag == "cifar100_lt"
    assert get_entry("iccl_resnet50").tag == "imagenet_lt"
    assert get_entry("iccl_resnet50.inat2018").recipe().dataset == "inat2018"
    fm = get_entry("iccl_resnet32.fmnist_lt").recipe()
    ce = get_entry("ce_resnet32.fmnist_lt").recipe()
    assert sum(s.epochs for s in fm.stages) == sum(s.epochs for s in ce.stages)
    # Same batch and optimiser as CE in the stage that learns the representation, at the learning rate the
    # sweep chose on val as a multiple of CE's; the classifier stage keeps CE's.
    for field in ("batch_size", "weight_decay", "warmup_epochs", "schedule", "sampler"):
        assert getattr(fm.stages[0], field) == getattr(ce.stages[0], field), field
    assert fm.stages[0].lr == pytest.approx(ce.stages[0].lr * REPRESENTATION_LR_FACTOR)
    assert fm.stages[1].lr == ce.stages[0].lr
    assert get_entry("iccl_resnet32.cifar100_lt").recipe().stages[0].lr == pytest.approx(0.1 * REPRESENTATION_LR_FACTOR)
    assert [s.name for s in fm.stages] == ["representation", "classifier"]
    stage2 = fm.stages[1]
    assert (stage2.sampler, stage2.train) == ("class_balanced", "head")
    # Every choice is spelled out in the recipe, so config.json and the card show it.
    for key in ("alpha", "lambda_mode", "temperature", "centroid_momentum", "iccl_weight", "ce_weight"):
        assert key in fm.method_args


def test_ablation_variants() -> None:
    full = iccl_fmnist_lt()
    no_interp = iccl_variant(full, interpolation=False)
    assert no_interp.method_args["lambda_mode"] == "none"
    assert [s.epochs for s in no_interp.stages] == [s.epochs for s in full.stages]
    no_stage2 = iccl_variant(full, stage2=False)
    assert [s.name for s in no_stage2.stages] == ["representation"]
    assert no_stage2.stages[0].epochs == full.stages[0].epochs and no_stage2.stages[0].select_on_val
    assert no_stage2.method_args["stage2"] is False
    assert full.method_args["lambda_mode"] == "per_sample"  # the original is untouched


def _ctx(recipe, stage_index: int, data) -> StageContext:
    return StageContext(
        recipe=recipe, stage=recipe.stages[stage_index], stage_index=stage_index, data=data.info, steps_per_epoch=1
    )


def test_method_factory_picks_objective_by_stage_and_checks_args(fmnist) -> None:
    recipe = iccl_fmnist_lt()
    model = build_model("resnet32", 10, in_chans=1)
    assert isinstance(iccl(model, _ctx(recipe, 0, fmnist)), ICCLRepresentation)
    assert isinstance(iccl(model, _ctx(recipe, 1, fmnist)), ClassifierRebalancing)
    bad = recipe.replace(method_args={**recipe.method_args, "temprature": 0.1})
    with pytest.raises(BadHyperParameterError, match="temprature"):
        iccl(model, _ctx(bad, 0, fmnist))
    inconsistent = recipe.replace(method_args={**recipe.method_args, "stage2": False})
    with pytest.raises(BadHyperParameterError, match="iccl_variant"):
        iccl(model, _ctx(inconsistent, 0, fmnist))
    renamed = recipe.replace(stages=[dataclasses.replace(recipe.stages[0], name="main"), recipe.stages[1]])
    with pytest.raises(BadHyperParameterError, match="'main'"):
        iccl(model, _ctx(renamed, 0, fmnist))


# ----- lockstep samplers --------------------------------------------------------------------------


def _paired_streams(fmnist, out: Path, epochs: int) -> tuple[list[int], list[int]]:
    """Labels of the instance and class-balanced streams the trainer builds for ICCL's stage 1.

    The first epoch is read through the lockstep loader (images and all); further epochs only
    through the samplers' index streams, which is what the loader batches up.
    """
    recipe = _small(iccl_fmnist_lt(), batch_size=128)
    trainer = Trainer(recipe, out, data=fmnist)
    objective = iccl(trainer.model, _ctx(recipe, 0, fmnist))
    samplers: list = []
    loader = objective.train_loader(trainer._make_loader_factory(recipe.stages[0], 0, samplers))
    assert len(samplers) == 2 and len(loader) == len(fmnist.train) // 128
    targets = fmnist.train.targets
    labels_a, labels_b = [], []
    for epoch in range(epochs):
        for sampler in samplers:
            sampler.set_epoch(epoch)
        used = len(loader) * 128  # drop_last: the loader yields whole batches only
        stream_a = [targets[i] for i in samplers[0]][:used]
        stream_b = [targets[i] for i in samplers[1]][:used]
        if epoch == 0:
            seen_a, seen_b = [], []
            for (images_a, targets_a), (images_b, targets_b) in loader:
                assert images_a.shape == images_b.shape == (128, 1, 28, 28)  # same batch size, in lockstep
                seen_a += targets_a.tolist()
                seen_b += targets_b.tolist()
            assert (seen_a, seen_b) == (stream_a, stream_b)
        labels_a += stream_a
        labels_b += stream_b
    return labels_a, labels_b


def test_class_aware_stream_is_uniform_and_independent_of_instance_stream(fmnist, tmp_path) -> None:
    labels_a, labels_b = _paired_streams(fmnist, tmp_path / "run", epochs=10)
    n = len(labels_b)
    assert n == 10 * (len(fmnist.train) // 128) * 128
    balanced = Counter(labels_b)
    for k in range(10):  # uniform over classes: n/10 (2432) each; 10% is about 6 standard deviations
        assert abs(balanced[k] - n / 10) < 0.1 * n / 10, balanced
    instance = Counter(labels_a)
    counts = fmnist.class_counts
    for k in range(10):  # the instance stream follows the long tail: class 0 ~40%, class 9 ~0.4%
        assert abs(instance[k] / n - counts[k] / sum(counts)) < 0.01
    # Independent streams: pairs of classes are not tied (a shared seed would repeat the pairing).
    same_class = sum(a == b for a, b in zip(labels_a, labels_b)) / n
    assert abs(same_class - 0.1) < 0.02  # P(y_a == y_b) = sum_k p_a(k) * 1/10 = 0.1
    # Deterministic from the seed: the same streams again.
    assert _paired_streams(fmnist, tmp_path / "again", epochs=2) == (labels_a[: n // 5], labels_b[: n // 5])


def test_lambda_draws_repeat_per_epoch(fmnist) -> None:
    recipe = iccl_fmnist_lt()
    objective = iccl(build_model("resnet32", 10, in_chans=1), _ctx(recipe, 0, fmnist))
    objective.on_epoch_start(3)
    first = objective._rng.beta(1.0, 1.0, size=5)
    objective.on_epoch_start(4)
    other = objective._rng.beta(1.0, 1.0, size=5)
    objective.on_epoch_start(3)
    assert (objective._rng.beta(1.0, 1.0, size=5) == first).all() and not (first == other).all()


# ----- one short run of the recipe: stage 2 changes only the classifier; the model loads; resume --


SHORT = dict(epochs=3, steps_per_epoch=2)  # the fmnist recipe's 25 + 5 epochs scale to 2 + 1


@pytest.fixture(scope="module")
def short_run(fmnist, tmp_path_factory):
    """One short run of the recipe; the weights stage 2 starts from are captured on the way."""
    before_stage2: dict[str, torch.Tensor] = {}
    original = ClassifierRebalancing.on_epoch_start

    def capture(self, epoch: int) -> None:
        if epoch == 0:
            before_stage2.update({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        original(self, epoch)

    out = tmp_path_factory.mktemp("iccl") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ClassifierRebalancing, "on_epoch_start", capture)
        metrics = train(_small(iccl_fmnist_lt()), out, data=fmnist, **SHORT)
    return out, metrics, before_stage2


@pytest.mark.slow
def test_stage2_changes_only_the_classifier(short_run) -> None:
    out, _, before = short_run
    after = load_state_dict_file(out / "model.safetensors")
    assert set(after) == set(before)
    backbone = [k for k in before if k.startswith("backbone.")]
    assert any("running_mean" in k for k in backbone)  # BN statistics are compared too
    for key in backbone:
        assert torch.equal(after[key], before[key]), f"stage 2 changed {key}"
    head = [k for k in before if k.startswith("head.")]
    assert head and all(not torch.equal(after[k], before[k]) for k in head)


@pytest.mark.slow
def test_short_run_saves_a_loadable_model(short_run, fmnist) -> None:
    out, metrics, _ = short_run
    lines = (out / "train_log.jsonl").read_text().splitlines()
    assert len(lines) == 3 and '"representation"' in lines[0] and '"classifier"' in lines[2]
    assert '"iccl"' in lines[0] and '"ce"' in lines[0]  # both loss terms were logged in stage 1
    model, config = ltzoo.load(f"local-dir:{out}", with_config=True)
    assert config["ltzoo"]["method"] == "iccl"
    assert config["ltzoo"]["recipe"]["method_args"]["lambda_mode"] == "per_sample"
    assert not any("projection" in k or "memory" in k for k in model.state_dict())  # training-only parts stay out
    images = torch.stack([fmnist.test[i][0] for i in range(4)]).float() / 255.0
    reference = build_model("resnet32", 10, in_chans=1)
    reference.load_state_dict(load_state_dict_file(out / "model.safetensors"))
    reference.eval()
    with torch.no_grad():
        assert torch.allclose(model(images), reference(images))
    assert set(metrics["test"]) >= {"all", "many", "medium", "few"}


@pytest.mark.slow
def test_resume_reproduces_an_uninterrupted_run(short_run, fmnist, tmp_path) -> None:
    recipe = _small(iccl_fmnist_lt())
    assert [s.epochs for s in Trainer(recipe, tmp_path / "probe", data=fmnist, **SHORT).recipe.stages] == [2, 1]
    original = ICCLRepresentation.on_epoch_start

    def killed_at_second_epoch(self, epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt("simulated kill after the first checkpoint")
        original(self, epoch)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ICCLRepresentation, "on_epoch_start", killed_at_second_epoch)
        with pytest.raises(KeyboardInterrupt):
            train(recipe, tmp_path / "resumed", data=fmnist, **SHORT)
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    train(recipe, tmp_path / "resumed", data=fmnist, resume=True, **SHORT)
    # Sampler streams, lam draws, centroids and the stage-2 head init all repeat exactly.
    straight = load_state_dict_file(short_run[0] / "model.safetensors")
    resumed = load_state_dict_file(tmp_path / "resumed" / "model.safetensors")
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
