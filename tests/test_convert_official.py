"""Official DSCL checkpoints (built here in the official key layout) -> ltzoo run directories."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import ltzoo
from ltzoo.cli.convert_official import main_convert_official as main
from ltzoo.convert_official import convert_official
from ltzoo.errors import ConfigMismatchError, CorruptFileError, LtzooError

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("single_thread")  # conftest.py


def _stage1_state(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """main.py's DSCL model under DDP: encoder_q / encoder_k with the MLP head at fc.0 / fc.2, queues."""
    backbone = {k: v for k, v in encoder.state_dict().items() if not k.startswith("fc.")}
    mlp = {
        "fc.0.weight": torch.randn(2048, 2048) * 0.01,
        "fc.0.bias": torch.zeros(2048),
        "fc.2.weight": torch.randn(128, 2048) * 0.01,
        "fc.2.bias": torch.zeros(128),
    }
    state = {}
    for tower in ("encoder_q", "encoder_k"):
        for key, value in {**backbone, **mlp}.items():
            state[f"module.{tower}.{key}"] = value.clone()
    state["module.queue"] = nn.functional.normalize(torch.randn(128, 64), dim=0)
    state["module.main_label_queue"] = torch.randint(0, 1000, (1, 64))
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    return state


def _randomise_bn(model: nn.Module) -> None:
    torch.manual_seed(3)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)


@pytest.fixture(scope="module")
def official_resnet50():
    torch.manual_seed(0)
    model = torchvision.models.resnet50()
    _randomise_bn(model)  # so that a wrong mapping of BN buffers shows in the outputs
    return model.eval()


def test_stage2_checkpoint_gives_the_same_logits(tmp_path, official_resnet50):
    ckpt = tmp_path / "linear_best.pth.tar"
    state = {f"module.{k}": v for k, v in official_resnet50.state_dict().items()}
    optimizer = torch.optim.SGD([official_resnet50.fc.weight, official_resnet50.fc.bias], lr=10.0, momentum=0.9)
    torch.save(
        {
            "epoch": 40,
            "arch": "resnet50",
            "state_dict": state,
            "best_acc1": torch.tensor(57.7),
            "optimizer": optimizer.state_dict(),
        },
        ckpt,
    )
    report = convert_official("dscl", ckpt, tmp_path / "run")
    assert report.stage == 2 and report.head_trained and report.epoch == 40
    assert report.missing == [] and report.unexpected == [] and report.dropped_training_only == []
    assert report.mapped == len(state)
    model = ltzoo.load(f"local-dir:{tmp_path / 'run'}")
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(images), official_resnet50(images), atol=1e-4)


def test_stage1_checkpoint_keeps_encoder_q_and_reports_the_rest(tmp_path, official_resnet50):
    ckpt = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 200, "arch": "resnet50", "state_dict": _stage1_state(official_resnet50)}, ckpt)
    report = convert_official("dscl", ckpt, tmp_path / "run")
    assert report.stage == 1 and not report.head_trained
    assert report.missing == ["head.bias", "head.weight"]
    assert report.unexpected == []
    # 4 MLP tensors of encoder_q, every encoder_k tensor, and the three queue buffers
    backbone_keys = [k for k in official_resnet50.state_dict() if not k.startswith("fc.")]
    assert len(report.dropped_training_only) == 4 + (len(backbone_keys) + 4) + 3
    model, config = ltzoo.load(f"local-dir:{tmp_path / 'run'}", with_config=True)
    assert config["ltzoo"]["head_trained"] is False
    images = torch.randn(2, 3, 64, 64)
    trunk = nn.Sequential(*list(official_resnet50.children())[:-1])  # up to the average pool
    with torch.no_grad():
        ours = model.forward_head(model.forward_features(images), pre_logits=True)
        assert torch.allclose(ours, trunk(images).flatten(1), atol=1e-4)
    assert model.head.bias.abs().sum() == 0 and model.head.weight.std() < 0.02  # N(0, 0.01) init


def test_cli_prints_the_report(tmp_path, official_resnet50, capsys):
    ckpt = tmp_path / "linear.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in official_resnet50.state_dict().items()}}, ckpt)
    argv = ["--source", "dscl", "--checkpoint", str(ckpt), "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["stage"] == 2 and printed["missing"] == [] and printed["unexpected"] == []
    assert (tmp_path / "run" / "model.safetensors").is_file()
    # a second conversion into the same directory is refused, with the reason on stderr
    assert main(argv) == 2
    assert "already holds a model" in capsys.readouterr().err
    # the script in export/ is the same command line
    result = subprocess.run(
        [sys.executable, str(ROOT / "export" / "convert_official.py"), "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0 and "--checkpoint" in result.stdout


def test_wrong_architecture_is_refused_with_the_keys(tmp_path):
    ckpt = tmp_path / "resnet18.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in torchvision.models.resnet18().state_dict().items()}}, ckpt)
    with pytest.raises(ConfigMismatchError, match="shape mismatches|missing keys"):
        convert_official("dscl", ckpt, tmp_path / "run")
    assert not (tmp_path / "run").exists()


class _NotAWeight:
    pass


def test_pickled_objects_are_not_loaded(tmp_path):
    ckpt = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(1)}, "extra": _NotAWeight()}, ckpt)
    with pytest.raises(CorruptFileError, match="weights_only=True"):
        convert_official("dscl", ckpt, tmp_path / "run")


def test_unknown_source(tmp_path):
    # LtzooError is what main() turns into a one-line message and exit code 2 (anything else is a traceback).
    with pytest.raises(LtzooError, match="unknown --source 'moco'; known sources: dscl"):
        convert_official("moco", tmp_path / "x.pth", tmp_path / "run")
    assert not (tmp_path / "run").exists()
