"""Post-hoc tail calibration (issue 28): exact folding, choice on val only, EM prior estimates, bad priors.

The real thing throughout: the shared short CE run on real fmnist_lt, the real evaluator, ONNX Runtime for the
exported graph, and the command line as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ltzoo.calibration.heads import read_head
from ltzoo.calibration.job import CalibrationOptions, calibrate, calibrate_model, split_pre_logits
from ltzoo.calibration.priors import read_prior_file, resolve_target_prior
from ltzoo.calibration.select import choose, method_heads
from ltzoo.calibration.shift import estimate_prior, fit_bcts
from ltzoo.data import LTDataset, TensorImageDataset
from ltzoo.errors import BadHyperParameterError, DataNotFoundError
from ltzoo.loading import load

pytestmark = pytest.mark.usefixtures("single_thread")


def _logits_and_features(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        return model.head(pooled).double().numpy(), pooled.double().numpy()


def _images(data, split: str, count: int) -> torch.Tensor:
    from ltzoo.data.transforms import eval_transform

    transform = eval_transform(data.info)
    dataset = data.split(split)
    return torch.stack([transform(dataset[i][0]) for i in range(count)])


# ----- folding is exact ------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_method_folds_exactly_into_a_plain_linear_head(ce_fmnist_run, fmnist):
    parent, config = load(ce_fmnist_run, with_config=True)
    x = _images(fmnist, "test", 64)
    plain, pooled = _logits_and_features(parent, x)
    log_prior = np.log(np.asarray(fmnist.class_counts) / sum(fmnist.class_counts))
    weight, bias = parent.head.weight.double().detach().numpy(), parent.head.bias.double().detach().numpy()
    train = split_pre_logits(parent, read_head(parent.head, {"type": "linear"}), fmnist, "train", 256)
    for method in ("la", "tau-norm", "ncm"):
        result = calibrate_model(parent, config, fmnist, CalibrationOptions(method=method))
        assert type(result.model.head).__name__ == "LinearHead" and result.head_spec == {"type": "linear"}
        tau = result.record["parameter"]
        if method == "la":
            expected = plain - tau * log_prior
        elif method == "tau-norm":
            expected = pooled @ (weight / np.linalg.norm(weight, axis=1, keepdims=True) ** tau).T
        else:
            unit = train[0] / np.linalg.norm(train[0], axis=1, keepdims=True)
            means = np.stack([unit[train[1] == c].mean(0) for c in range(10)])
            expected = pooled @ (means / np.linalg.norm(means, axis=1, keepdims=True)).T
        got, _ = _logits_and_features(result.model, x)
        assert np.abs(got - expected).max() <= 1e-5, (method, np.abs(got - expected).max())
    assert np.abs(bias).max() > 0  # la's expectation above keeps the trained bias: it was really there


@pytest.mark.slow
def test_a_calibrated_run_loads_evaluates_and_exports_like_a_trained_one(ce_fmnist_run, fmnist, tmp_path):
    from ltzoo.cli.export import main_export
    from ltzoo.export.providers import create_session

    out = tmp_path / "calibrated"
    metrics = calibrate(str(ce_fmnist_run), out, CalibrationOptions(method="la"))
    record = json.loads((out / "config.json").read_text())["ltzoo"]["calibration"]
    assert record["method"] == "la" and record["parent"] == f"local-dir:{ce_fmnist_run.name}"
    assert [p["parameter"] for p in record["val_curves"]["la"]][:3] == [0.0, 0.05, 0.1]
    assert (out / "calibration.png").read_bytes()[:4] == b"\x89PNG"
    # `ltzoo eval` reproduces the recorded numbers
    done = subprocess.run(
        [sys.executable, "-m", "ltzoo", "eval", str(out), "--split", "test", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["all"] == pytest.approx(metrics["test"]["all"], abs=1e-6)
    # the exported graph computes the plain logits transformed by the recorded method
    assert main_export(["--model", str(out), "--out", str(tmp_path / "onnx")]) == 0
    parent = load(ce_fmnist_run)
    x = _images(fmnist, "val", 32)
    plain, _ = _logits_and_features(parent, x)
    log_prior = np.log(np.asarray(fmnist.class_counts) / sum(fmnist.class_counts))
    graph = create_session(tmp_path / "onnx" / "model.onnx").run(["logits"], {"input": x.numpy()})[0]
    assert np.abs(graph - (plain - record["parameter"] * log_prior)).max() <= 1e-5


# ----- test never chooses --------------------------------------------------------------------------------
def _with_test(data: LTDataset, indices: list[int]) -> LTDataset:
    test = data.test
    images = torch.stack([test[i][0] for i in indices])
    return LTDataset(
        name=data.name,
        train=data.train,
        val=data.val,
        test=TensorImageDataset(images, [test.targets[i] for i in indices]),
        label_names=data.label_names,
        info=data.info,
        index_sha256=data.index_sha256,
        source=data.source,
    )


@pytest.mark.slow
def test_the_choice_is_the_same_whatever_the_test_split_says(ce_fmnist_run, fmnist):
    parent, config = load(ce_fmnist_run, with_config=True)
    targets = np.asarray(fmnist.test.targets)
    head_only = _with_test(fmnist, np.flatnonzero(np.isin(targets, fmnist.shots.many))[:2000].tolist())
    tail_only = _with_test(fmnist, np.flatnonzero(np.isin(targets, fmnist.shots.few))[:2000].tolist())
    choices = []
    for data in (head_only, tail_only):
        result = calibrate_model(parent, config, data, CalibrationOptions())
        choices.append((result.record["method"], result.record["parameter"]))
        read = read_head(parent.head, {"type": "linear"})
        test = split_pre_logits(parent, read, data, "test", 256)
        log_prior = np.log(np.asarray(data.class_counts) / sum(data.class_counts))
        on_test = choose("auto", read, test, data.shots, log_prior, split_pre_logits(parent, read, data, "train", 256))
        choices.append(("test would choose", on_test.chosen.method, on_test.chosen.parameter))
    # val chose the same both times; test, had it been asked, would have chosen differently on the two splits
    assert choices[0] == choices[2]
    assert choices[1] != choices[3]


def test_auto_keeps_no_change_on_a_tie_and_the_smaller_tau():
    from ltzoo.calibration.heads import AffineHead, ReadHead
    from ltzoo.data.longtail import shot_split

    # Two classes, far apart: every candidate scores 100 % on val, so the simplest (no change) is kept.
    read = ReadHead(
        AffineHead("identity", np.eye(2), np.zeros(2)), {"type": "linear"}, {"la": None, "tau-norm": None, "ncm": None}
    )
    val = (np.array([[5.0, 0.0], [0.0, 5.0]]), np.array([0, 1]))
    train = (np.array([[5.0, 0.0], [4.0, 0.0], [0.0, 5.0]]), np.array([0, 0, 1]))
    choice = choose("auto", read, val, shot_split([200, 10]), np.log(np.array([2 / 3, 1 / 3])), train)
    assert choice.chosen.method == "none"
    assert choice.best_per_method["la"].parameter == 0.0  # every tau ties: the smallest
    with pytest.raises(BadHyperParameterError, match="does not apply"):
        choose(
            "tau-norm",
            ReadHead(read.affine, {}, {"la": None, "ncm": None, "tau-norm": "unit rows"}),
            val,
            shot_split([200, 10]),
            np.zeros(2),
            train,
        )


# ----- EM recovers a prior --------------------------------------------------------------------------------
def test_em_recovers_a_known_prior_from_calibrated_synthetic_posteriors():
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    true_prior = np.array([0.55, 0.25, 0.15, 0.05])
    labels = rng.choice(4, size=40_000, p=true_prior)
    x = means[labels] + rng.normal(size=(len(labels), 2))
    # exact log-posteriors under a uniform source prior: log N(x; mu_k, I) up to a shared constant
    log_posteriors = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1)
    estimate, iterations = estimate_prior(log_posteriors, np.full(4, 0.25))
    assert np.abs(estimate - true_prior).max() < 0.02, estimate
    assert iterations > 1


def test_bcts_recovers_a_temperature_and_bias():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(size=(20_000, 3)) * 2
    labels = np.array([rng.choice(3, p=np.exp(z) / np.exp(z).sum()) for z in true_logits])
    fitted = fit_bcts(true_logits * 3.0 + np.array([1.0, 0.0, -1.0]), labels)  # over-confident and biased
    assert fitted.temperature == pytest.approx(3.0, rel=0.05)
    assert np.asarray(fitted.bias) == pytest.approx(
        np.array([-1 / 3, 0, 1 / 3]) - np.mean([-1 / 3, 0, 1 / 3]), abs=0.06
    )


@pytest.mark.slow
def test_em_on_a_short_real_run_finds_a_backward_long_tailed_test_prior(ce_fmnist_run, fmnist):
    """A backward long-tailed draw of the real test split (imbalance 10, the few-shot classes most frequent). The
    shared run is short (4 epochs, about 45 % test top-1), so its posteriors are poor, and how poor depends on the CPU
    that trained it (fp32 kernels differ; 4 epochs amplify it). The stated tolerance: the EM estimate is within 0.3 of
    the true prior in total variation, closer than its uniform start (val's prior) and at most 0.6 of the training
    prior's distance, and it puts more than half the mass on the five classes the draw made frequent. (Measured:
    0.16 against 0.29 and 0.73 on one machine, 0.25 on another, an AMD EPYC.)"""
    parent, config = load(ce_fmnist_run, with_config=True)
    read = read_head(parent.head, {"type": "linear"})
    val = split_pre_logits(parent, read, fmnist, "val", 256)
    counts = np.floor(600 * 10.0 ** (-np.arange(10)[::-1] / 9)).astype(int)  # class 9 (fewest in training): 600
    targets = np.asarray(fmnist.test.targets)
    rng = np.random.default_rng(0)
    picked = np.concatenate([rng.choice(np.flatnonzero(targets == c), n, replace=False) for c, n in enumerate(counts)])
    shifted = _with_test(fmnist, sorted(picked.tolist()))
    test = split_pre_logits(parent, read, shifted, "test", 256)
    bcts = fit_bcts(read.affine.logits(val[0]), val[1])
    estimate, _ = estimate_prior(bcts.log_probs(read.affine.logits(test[0])), np.full(10, 0.1))
    truth = counts / counts.sum()
    train_prior = np.asarray(fmnist.class_counts) / sum(fmnist.class_counts)
    distance = 0.5 * np.abs(estimate - truth).sum()
    assert distance < 0.3, (distance, estimate.round(3), truth.round(3))
    assert distance < 0.5 * np.abs(0.1 - truth).sum(), (distance, estimate.round(3))
    assert distance < 0.6 * 0.5 * np.abs(train_prior - truth).sum()
    assert estimate[5:].sum() > 0.5, estimate.round(3)  # the shift's direction: classes 5-9 hold 78 % of the draw


# ----- bad priors: one clear error each, nothing written ---------------------------------------------------
LABELS = ["a", "b", "c"]


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ('{"a": 1, "b": 2, "zebra": 3, "c": 1}', ".json", "unknown class name"),
        ('{"a": 1, "b": 2}', ".json", "missing class"),
        ('{"a": 1, "b": -2, "c": 1}', ".json", ">= 0"),
        ('{"a": 1, "b": NaN, "c": 1}', ".json", "not finite"),
        ('{"a": 0, "b": 0, "c": 0}', ".json", "all zero"),
        ("[0.5, 0.5]", ".json", "lists 2 frequencies but the model has 3 classes"),
        ("label,frequency\na,1\nb,x\nc,1\n", ".csv", "not a number"),
        ("a,1\nb,1\nb,2\nc,1\n", ".csv", "named twice"),
        ("a,1\nb,inf\nc,1\n", ".csv", "not finite"),
    ],
)
def test_every_bad_prior_file_gets_its_error(tmp_path, content, suffix, message):
    path = tmp_path / f"prior{suffix}"
    path.write_text(content)
    with pytest.raises(BadHyperParameterError, match=message):
        read_prior_file(path, LABELS)


def test_good_prior_files_are_normalised_by_label_name(tmp_path):
    (tmp_path / "p.json").write_text('{"c": 2, "a": 6, "b": 2}')
    (tmp_path / "p.csv").write_text("label,frequency\nb,20\na,60\nc,20\n")
    for name in ("p.json", "p.csv"):
        assert read_prior_file(tmp_path / name, LABELS).values == pytest.approx((0.6, 0.2, 0.2))
    assert resolve_target_prior("train", LABELS, [8, 1, 1]).values == pytest.approx((0.8, 0.1, 0.1))
    with pytest.raises(DataNotFoundError, match="no such file"):
        resolve_target_prior(str(tmp_path / "nope.json"), LABELS, [1, 1, 1])


@pytest.mark.slow
def test_a_bad_prior_on_the_command_line_writes_nothing(ce_fmnist_run, tmp_path):
    bad = tmp_path / "prior.json"
    bad.write_text('{"T-shirt/top": 1}')
    out = tmp_path / "new" / "calibrated"
    done = subprocess.run(
        [sys.executable, "-m", "ltzoo", "calibrate", str(ce_fmnist_run), "--out", str(out), "--target-prior", str(bad)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2 and "missing class(es)" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "new").exists()


def test_methods_build_the_documented_heads():
    from ltzoo.calibration.heads import AffineHead, ReadHead

    read = ReadHead(
        AffineHead("identity", np.array([[3.0, 4.0], [0.0, 1.0]]), np.array([1.0, -1.0])),
        {},
        {"la": None, "tau-norm": None, "ncm": None},
    )
    la = dict(method_heads("la", read, np.log(np.array([0.9, 0.1])), None))
    assert la[1.0].bias == pytest.approx([1 - np.log(0.9), -1 - np.log(0.1)])
    tau_norm = dict(method_heads("tau-norm", read, np.zeros(2), None))
    assert np.allclose(tau_norm[1.0].weight, [[0.6, 0.8], [0.0, 1.0]]) and not tau_norm[1.0].bias.any()
