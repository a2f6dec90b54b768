"""Weight-balancing recipes end to end on real Fashion-MNIST images: train briefly, save, load, export.

Runs use a small real subset of fmnist_lt (every split capped per class) so that the trainer's
val/test passes stay cheap; the recipes, objectives, trainer and run directory are the real ones.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

import ltzoo
from ltzoo.data import LTDataset, TensorImageDataset, eval_transform
from ltzoo.engine.evaluator import accuracy_report
from ltzoo.engine.trainer import Trainer
from ltzoo.models.heads import ETFHead, LogitAdjustedHead
from ltzoo.registry import get_entry

pytestmark = pytest.mark.slow  # every test here trains (briefly) or exports a model

ONNX_TAU_GRID = [0.5, 1.0, 1.5]  # no 0: the exported model must carry a real adjustment


def _cap_per_class(dataset, cap: int) -> TensorImageDataset:
    targets = torch.tensor(dataset.targets)
    keep = torch.cat([torch.nonzero(targets == c).flatten()[:cap] for c in range(int(targets.max()) + 1)]).sort().values
    return TensorImageDataset(dataset.images[keep], targets[keep].tolist())


@pytest.fixture(scope="module")
def small_fmnist(fmnist) -> LTDataset:
    """fmnist_lt with train capped at 40 images per class (still long-tailed: 27, 16, 10 at the end)
    and val/test at 10 per class."""
    return LTDataset(
        name="fmnist_lt",
        train=_cap_per_class(fmnist.train, 40),
        val=_cap_per_class(fmnist.val, 10),
        test=_cap_per_class(fmnist.test, 10),
        label_names=fmnist.label_names,
        info=fmnist.info,
        index_sha256="test-subset-of-" + fmnist.index_sha256,
    )


def _train(name: str, out, data: LTDataset, **method_args) -> dict:
    entry = get_entry(name)
    recipe = entry.recipe()
    recipe.method_args.update(method_args)
    # One epoch of one step per stage, batch 32: the smallest run that still goes through every hook.
    stages = [dataclasses.replace(s, epochs=1, warmup_epochs=0, batch_size=32) for s in recipe.stages]
    return Trainer(recipe.replace(stages=stages), out, name=entry.name, data=data, steps_per_epoch=1).run()


@pytest.fixture(scope="module")
def onestage_run(small_fmnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("wb") / "wb_onestage"
    metrics = _train("wb_onestage_resnet32.fmnist_lt", out, small_fmnist, la_tau_grid=ONNX_TAU_GRID)
    return out, metrics


@pytest.mark.parametrize("name", ["wb_resnet32.fmnist_lt", "ce_wd_resnet32.fmnist_lt"])
def test_two_stage_recipes_train_one_short_epoch_and_save_a_loadable_model(name, small_fmnist, tmp_path):
    out = tmp_path / "run"
    metrics = _train(name, out, small_fmnist)
    model, config = ltzoo.load(f"local-dir:{out}", with_config=True)
    assert config["model_args"]["head"] == {"type": "linear"}
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    expected_stages = ["stage1", "stage2"] if name.startswith("wb_") else ["stage1"]
    assert [line["stage"] for line in log] == expected_stages
    # The saved weights reproduce the run's own test evaluation.
    images = torch.stack([small_fmnist.test[i][0] for i in range(len(small_fmnist.test))])
    batch = torch.stack([eval_transform(small_fmnist.info)(img) for img in images])
    with torch.no_grad():
        predictions = model(batch).argmax(1).numpy()
    report = accuracy_report(predictions, np.array(small_fmnist.test.targets), 10, small_fmnist.shots)
    assert report["all"] == pytest.approx(metrics["test"]["all"])


def test_wb_stage_two_trains_only_the_classifier_and_projects_rows(small_fmnist, tmp_path):
    entry = get_entry("wb_resnet32.fmnist_lt")
    recipe = entry.recipe()
    stage1 = dataclasses.replace(recipe.stages[0], epochs=1, warmup_epochs=0, batch_size=32)
    first = Trainer(recipe.replace(stages=[stage1]), tmp_path / "s1", data=small_fmnist, steps_per_epoch=1)
    first.run()
    before = {k: v.clone() for k, v in first.model.state_dict().items()}
    norms_before = before["head.weight"].norm(dim=1)
    # thresh 0.1 as the official code: radius = min + 0.1 (max - min) of the stage-1 rows.
    radius = float(norms_before.min() + 0.1 * (norms_before.max() - norms_before.min()))
    stage2 = dataclasses.replace(recipe.stages[1], epochs=1, batch_size=32)
    second = Trainer(
        recipe.replace(stages=[stage2]), tmp_path / "s2", data=small_fmnist, steps_per_epoch=2, model=first.model
    )
    second.run()
    after = second.model.state_dict()
    for key, value in before.items():
        if key.startswith("backbone."):
            assert torch.equal(after[key], value), f"{key} changed in the classifier stage"
    assert not torch.equal(after["head.bias"], before["head.bias"])
    assert after["head.weight"].norm(dim=1).max() <= radius * (1 + 1e-5)


def test_onestage_recipe_trains_saves_and_loads_with_the_adjustment_inside(onestage_run, small_fmnist):
    out, metrics = onestage_run
    model, config = ltzoo.load(f"local-dir:{out}", with_config=True)
    head_spec = config["model_args"]["head"]
    assert head_spec["type"] == "logit_adjusted" and head_spec["mode"] == "multiplicative"
    assert head_spec["tau"] in ONNX_TAU_GRID and head_spec["base"]["type"] == "etf"
    assert isinstance(model.head, LogitAdjustedHead) and isinstance(model.head.base, ETFHead)
    # The prior buffer came back from the weights: log pi of the training counts.
    counts = torch.tensor(small_fmnist.class_counts, dtype=torch.float64)
    assert torch.allclose(model.head.log_prior.double(), (counts / counts.sum()).log(), atol=1e-6)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        adjusted, plain = model(x), model.head.base(model.forward_head(model.forward_features(x), pre_logits=True))
    scale = counts.float().div(counts.sum()).pow(-head_spec["tau"])
    assert torch.allclose(adjusted, plain * scale, rtol=1e-5, atol=1e-6)


def test_onnx_export_of_a_onestage_model_carries_the_adjustment(onestage_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from ltzoo.export.onnx_export import export_onnx

    out, _ = onestage_run
    model = ltzoo.load(f"local-dir:{out}")
    graph = export_onnx(model, tmp_path / "model.onnx", (1, 28, 28))
    session = ort.InferenceSession(str(graph.path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # other than the export batch
        x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(batch))
        ort_logits = session.run(["logits"], {"input": x.numpy()})[0]
        with torch.no_grad():
            torch_logits = model(x).numpy()
            unadjusted = model.head.base(model.forward_head(model.forward_features(x), pre_logits=True)).numpy()
        np.testing.assert_allclose(ort_logits, torch_logits, rtol=1e-4, atol=1e-4)
        assert np.abs(ort_logits - unadjusted).max() > 1e-2  # the graph really ends in the adjustment


# ----- ltzoo eval --analysis ------------------------------------------------------------------------
def test_analysis_measures_fisher_ratio_and_norms_of_a_onestage_model(onestage_run, small_fmnist, tmp_path):
    from ltzoo.engine.feature_analysis import analyze, plot_report

    out, _ = onestage_run
    model = ltzoo.load(f"local-dir:{out}")
    analysis = analyze(model, small_fmnist, "val", 256)  # the data it was trained on (a capped fmnist_lt)
    assert analysis.split == "val" and math.isfinite(analysis.fisher_ratio) and analysis.fisher_ratio > 0
    assert len(analysis.feature_norms) == 10 and all(n > 0 for n in analysis.feature_norms)
    # Unit ETF rows times the multiplicative adjustment: row k has norm pi_k^-tau (prior of the training run).
    tau = json.loads((out / "config.json").read_text())["model_args"]["head"]["tau"]
    counts = np.array(small_fmnist.class_counts, dtype=np.float64)
    np.testing.assert_allclose(analysis.weight_norms, (counts / counts.sum()) ** -tau, rtol=1e-5)
    assert plot_report(analysis, tmp_path / "analysis.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_analysis_prints_and_plots(ce_fmnist_run, tmp_path, capsys):
    from ltzoo.cli import main

    plot = tmp_path / "analysis.png"
    assert main(["eval", str(ce_fmnist_run), "--split", "val", "--analysis", "--plot", str(plot), "--json"]) == 0
    analysis = json.loads(capsys.readouterr().out)["analysis"]
    assert analysis["split"] == "val" and math.isfinite(analysis["fisher_ratio"]) and analysis["fisher_ratio"] > 0
    assert len(analysis["weight_norms"]) == 10 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_refuses_data_other_than_the_training_data(onestage_run, capsys):
    """The one rule (ltzoo.runs.TrainedOn): a model trained on a capped fmnist_lt is not scored on the full one."""
    from ltzoo.cli import main

    out, _ = onestage_run
    assert main(["eval", str(out), "--split", "val"]) == 2
    assert "training class counts" in capsys.readouterr().err
