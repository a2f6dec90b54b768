"""The CUDA path: training (bf16 autocast + channels_last, fp16 with its gradient scaler), ``ltzoo eval
--device cuda``, the export gate with its PyTorch reference on the GPU, and NCCL data parallelism.

Every test here needs a CUDA GPU and is skipped without one, saying so; ``python -m benchmarks.gpu`` runs
them on a GPU machine and reports what they found. The last tests run everywhere: on a machine without a
GPU, ``--device cuda`` must fail at once with a clear error, before any data or weights are loaded.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
from ports import torchrun_command

from ltzoo.cli import main
from ltzoo.errors import LtzooError
from ltzoo.names import CONFIG_BLOCK

ROOT = Path(__file__).resolve().parent.parent
HAS_CUDA = torch.cuda.is_available()
cuda_only = pytest.mark.skipif(
    not HAS_CUDA,
    reason="needs a CUDA GPU: torch.cuda.is_available() is False on this machine "
    "(python -m benchmarks.gpu runs these tests on a GPU machine)",
)
SHORT = ["--epochs", "1", "--steps-per-epoch", "4"]


def _train(out: Path, *extra: str) -> dict:
    code = main(["train", "ce_resnet32.fmnist_lt", "--out", str(out), "--device", "cuda", *SHORT, *extra])
    assert code == 0
    return json.loads((out / "metrics.json").read_text())


def _eval_json(run: Path, device: str, capsys) -> dict:
    capsys.readouterr()
    assert main(["eval", str(run), "--device", device, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.gpu
@cuda_only
def test_train_on_cuda_uses_native_bf16_and_channels_last(tmp_path, capsys):
    from ltzoo.precision import native_bf16

    metrics = _train(tmp_path / "run")
    assert metrics["precision"] == ("bf16" if native_bf16(torch.device("cuda")) else "fp32")
    config = json.loads((tmp_path / "run" / "config.json").read_text())[CONFIG_BLOCK]
    assert config["channels_last"] is True, "CUDA trains in channels_last by default"
    assert all(math.isfinite(line["loss"]) for line in _log(tmp_path / "run"))
    # The run's own report was made on the GPU; the CPU reproduces it (fp32 on both, TF32 off on CUDA).
    on_cpu = _eval_json(tmp_path / "run", "cpu", capsys)
    for group in ("all", "many", "medium", "few"):
        assert abs(on_cpu[group] - metrics["test"][group]) <= 0.05, group


@pytest.mark.slow
@pytest.mark.gpu
@cuda_only
def test_fp16_trains_with_an_active_gradient_scaler(tmp_path):
    metrics = _train(tmp_path / "run", "--precision", "fp16")
    assert metrics["precision"] == "fp16"
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    scaler = state["grad_scaler"]
    assert scaler["scale"] > 0 and scaler["_growth_tracker"] >= 0  # an enabled scaler saves its state
    assert all(math.isfinite(line["loss"]) for line in _log(tmp_path / "run"))


@pytest.mark.gpu
@cuda_only
def test_eval_on_cuda_reports_what_the_cpu_reports(ce_fmnist_run, capsys):
    on_gpu = _eval_json(ce_fmnist_run, "cuda", capsys)
    on_cpu = _eval_json(ce_fmnist_run, "cpu", capsys)
    for group in ("all", "many", "medium", "few"):
        assert abs(on_gpu[group] - on_cpu[group]) <= 0.02, group  # at most 2 of 10,000 test images differ


@pytest.mark.slow
@pytest.mark.gpu
@cuda_only
def test_export_gate_with_the_reference_on_cuda_passes_like_on_the_cpu(ce_fmnist_run, tmp_path):
    from ltzoo.export import ExportOptions, export

    report = export(
        str(ce_fmnist_run), tmp_path / "onnx", ExportOptions(verify="dataset", device="cuda", provider="cpu")
    )
    assert report.passed, [str(f) for f in report.failures]
    assert report.verification.reference_device == "cuda"
    assert report.variants["fp32"].checks["parity"].passed  # 1e-4 against the GPU's fp32 logits
    for split, rows in report.verification.deltas.items():
        assert abs(rows["fp32"]["all"]) <= 0.02, split


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(
    torch.cuda.device_count() < 2,
    reason=f"needs 2 CUDA GPUs: NCCL refuses two processes on one GPU (this machine has {torch.cuda.device_count()})",
)
def test_torchrun_on_two_gpus_trains_with_nccl(tmp_path):
    out = tmp_path / "run"
    train = ["-m", "ltzoo", "train", "ce_resnet32.fmnist_lt", "--out", str(out), "--device", "cuda", *SHORT]
    cmd = torchrun_command(2, *train)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert state["world_size"] == 2


# ----- on every machine: a GPU that is not there is named before anything loads ----------------------
@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU: --device cuda is valid here")
@pytest.mark.parametrize(
    "command",
    [
        ["train", "ce_resnet32.fmnist_lt", "--out", "{tmp}/run", "--device", "cuda"],
        ["eval", "ce_resnet32.fmnist_lt", "--device", "cuda"],
        ["export", "--model", "ce_resnet32.fmnist_lt", "--out", "{tmp}/onnx", "--device", "cuda"],
    ],
    ids=["train", "eval", "export"],
)
def test_device_cuda_without_a_gpu_fails_at_once(command, tmp_path, capsys):
    assert main([part.replace("{tmp}", str(tmp_path)) for part in command]) == 2
    error = capsys.readouterr().err
    assert re.search(r"--device cuda: this machine or torch build has no CUDA GPU .*use --device cpu", error)
    assert not (tmp_path / "run").exists() and not (tmp_path / "onnx").exists()  # nothing was written


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cuda0", "tpu"])
def test_a_malformed_device_is_named(device):
    from ltzoo.preflight import check_device

    with pytest.raises(LtzooError, match=r"expected cpu, cuda or cuda:N"):
        check_device(device)
