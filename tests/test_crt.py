"""cRT on CE: the reference row's second stage re-trains only the classifier, class-balanced."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from ltzoo.data import LTDataset, TensorImageDataset
from ltzoo.engine.trainer import train
from ltzoo.errors import BadHyperParameterError
from ltzoo.registry import get_entry


def test_crt_retrains_the_classifier_on_the_frozen_ce_backbone(fmnist, tmp_path):
    cut = lambda d: TensorImageDataset(d.images[:100], d.targets[:100])  # noqa: E731
    data = LTDataset(
        fmnist.name,
        fmnist.train,
        cut(fmnist.val),
        cut(fmnist.test),
        fmnist.label_names,
        fmnist.info,
        fmnist.index_sha256,
    )
    recipe = get_entry("crt_resnet32.fmnist_lt").recipe()
    assert [(s.name, s.sampler, s.train) for s in recipe.stages] == [
        ("representation", "instance", "all"),
        ("classifier", "class_balanced", "head"),
    ]
    assert sum(s.epochs for s in recipe.stages) == sum(
        s.epochs for s in get_entry("ce_resnet32.fmnist_lt").recipe().stages
    )
    recipe = recipe.replace(stages=[dataclasses.replace(s, epochs=1, warmup_epochs=0) for s in recipe.stages])
    train(recipe, tmp_path / "run", data=data, steps_per_epoch=2)
    after_ce = torch.load(tmp_path / "run" / "checkpoints" / "after_representation.pt", weights_only=True)["model"]
    final = load_file(tmp_path / "run" / "model.safetensors")
    backbone = [k for k in after_ce if k.startswith("backbone.")]
    assert backbone and all(torch.equal(final[k], after_ce[k]) for k in backbone)  # BN statistics included
    assert not torch.equal(final["head.weight"], after_ce["head.weight"])


def test_crt_refuses_an_instance_sampled_classifier_stage(fmnist, tmp_path):
    recipe = get_entry("crt_resnet32.fmnist_lt").recipe()
    bad = recipe.replace(stages=[recipe.stages[0], dataclasses.replace(recipe.stages[1], sampler="instance")])
    with pytest.raises(BadHyperParameterError, match="sampler='class_balanced'"):
        train(
            bad.replace(stages=[dataclasses.replace(s, epochs=1, warmup_epochs=0) for s in bad.stages]),
            tmp_path / "bad",
            steps_per_epoch=1,
        )
