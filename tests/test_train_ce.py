"""Training: a real short CE run, resume after a kill, NaN handling, bad options."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ltzoo.engine.objective import Objective, StepOutput, register_method
from ltzoo.engine.trainer import train
from ltzoo.errors import BadHyperParameterError, LtzooError, NonFiniteLossError
from ltzoo.precision import native_bf16
from ltzoo.recipe import Recipe, StageConfig
from ltzoo.registry import get_entry


def test_short_ce_run_beats_chance(ce_fmnist_run):
    metrics = json.loads((ce_fmnist_run / "metrics.json").read_text())
    # 10 balanced test classes: chance is 10 %. Four epochs on 2,478 images already do far better.
    assert metrics["test"]["all"] > 30.0, metrics["test"]
    assert metrics["test"]["many"] > metrics["test"]["few"]  # the long tail is visible
    log = [json.loads(line) for line in (ce_fmnist_run / "train_log.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in log] == [1, 2, 3, 4]
    assert metrics["selected"]["epoch"] == max(log, key=lambda record: record["val_all"])["epoch"]  # selected on val


# Emulated bf16 (no AMX / AVX512_BF16) is about ten times slower per step: fewer steps keep the kill test short there,
# while a native-bf16 CPU keeps enough steps per epoch for the kill to land inside epoch 2.
STEPS_PER_EPOCH = "12" if native_bf16(torch.device("cpu")) else "4"


def _train_cmd(out, *extra):
    return [
        sys.executable,
        "-m",
        "ltzoo",
        "train",
        "ce_resnet32.fmnist_lt",
        "--out",
        str(out),
        "--epochs",
        "3",
        "--steps-per-epoch",
        STEPS_PER_EPOCH,
        *extra,
    ]


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    """Under bf16 autocast (emulated on a CPU without native bf16: slower, but the same arithmetic)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    ran = subprocess.run(
        _train_cmd(reference, "--precision", "bf16"), check=True, env=env, capture_output=True, text=True
    )
    # One readable line per epoch, on stdout with the rest of what a user reads (the JSON stays in train_log.jsonl).
    epoch_lines = [line for line in ran.stdout.splitlines() if line.startswith("main ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/3", "2/3", "3/3"], ran.stdout
    assert all("loss " in line and "img/s" in line and "val " in line and "few " in line for line in epoch_lines)
    assert "* new best" in epoch_lines[0]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cmd(killed, "--precision", "bf16"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    log = killed / "train_log.jsonl"
    deadline = time.time() + 300
    while not (log.is_file() and log.read_text().count("\n") >= 1) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # now inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.safetensors").exists(), "the run finished before it was killed"
    assert (killed / "checkpoints" / "last.pt").is_file()
    # Pretend the killed part took an hour: the resumed run's reported time must carry it over.
    checkpoint = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["train_time_s"] > 0
    checkpoint["train_time_s"] = 3600.0
    torch.save(checkpoint, killed / "checkpoints" / "last.pt")

    # Without --resume the half-finished run is protected, not overwritten
    refused = subprocess.run(_train_cmd(killed), env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "--resume" in refused.stderr

    # --resume keeps the run's precision without being told; --log-format json prints the log's own lines.
    resumed = subprocess.run(
        _train_cmd(killed, "--resume", "--log-format", "json"), check=True, env=env, capture_output=True, text=True
    )
    printed = [json.loads(line) for line in resumed.stdout.splitlines() if line.startswith("{")]
    assert (
        printed
        and printed
        == [json.loads(line) for line in (killed / "train_log.jsonl").read_text().splitlines()][-len(printed) :]
    )
    ref_metrics = json.loads((reference / "metrics.json").read_text())
    res_metrics = json.loads((killed / "metrics.json").read_text())
    assert ref_metrics["precision"] == res_metrics["precision"] == "bf16"
    assert json.loads((killed / "config.json").read_text())["ltzoo"]["precision"] == "bf16"
    assert res_metrics["test"]["per_class"] == ref_metrics["test"]["per_class"]
    assert res_metrics["val"]["all"] == ref_metrics["val"]["all"]
    assert res_metrics["train_time_s"] > 3600.0, "training time before the kill was dropped on resume"
    ref_log = (reference / "train_log.jsonl").read_text().splitlines()
    res_log = (killed / "train_log.jsonl").read_text().splitlines()
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k != "images_per_s"}  # noqa: E731
    assert [strip(line) for line in res_log] == [strip(line) for line in ref_log]

    # What the run reports is an fp32 evaluation of the saved weights: `ltzoo eval` gives exactly it.
    evaluated = subprocess.run(
        [sys.executable, "-m", "ltzoo", "eval", str(reference), "--split", "val", "--json"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    assert json.loads(evaluated.stdout)["per_class"] == ref_metrics["val"]["per_class"]
    assert ref_metrics["selected"]["val_all"] == ref_metrics["val"]["all"]


@register_method("_test_nan_after_first_epoch")
class _NanAfterFirstEpoch(Objective):
    def training_step(self, batch, epoch):
        loss = super().training_step(batch, epoch).loss
        return StepOutput(loss * float("nan") if epoch >= 1 else loss)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    recipe = Recipe(
        method="_test_nan_after_first_epoch",
        arch="resnet32",
        dataset="fmnist_lt",
        stages=[StageConfig(epochs=3, batch_size=64, lr=0.05)],
    )
    with pytest.raises(NonFiniteLossError, match=r"loss became nan in stage 'main', epoch 2, step 1") as info:
        train(recipe, tmp_path / "run", steps_per_epoch=3)
    assert "last.pt" in str(info.value) and "--resume" in str(info.value)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["epochs_done"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_bad_training_options(tmp_path):
    recipe = get_entry("ce_resnet32.fmnist_lt").recipe()
    with pytest.raises(BadHyperParameterError, match="--epochs must be >= 1"):
        train(recipe, tmp_path / "a", epochs=0)
    with pytest.raises(BadHyperParameterError, match="sampler 'balanced'"):
        StageConfig(sampler="balanced")
    with pytest.raises(BadHyperParameterError, match="has no objective"):
        train(recipe.replace(method="nope"), tmp_path / "b")


def test_existing_run_is_not_overwritten(ce_fmnist_run):
    with pytest.raises(LtzooError, match="already holds a run"):
        train(get_entry("ce_resnet32.fmnist_lt").recipe(), ce_fmnist_run, epochs=1)
