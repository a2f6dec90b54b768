"""Run directories: round trip, strict loading and the documented errors for bad files."""

import json
import shutil

import pytest
import torch

import ltzoo
from ltzoo.errors import ConfigMismatchError, CorruptFileError, DataNotFoundError
from ltzoo.models import build_model
from ltzoo.runs import build_config, read_config, save_run


def copy_run(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints"))
    return dst


def test_round_trip_gives_the_logits_of_the_model_before_saving(tmp_path, fmnist):
    torch.manual_seed(0)
    model = build_model("resnet32", 10, in_chans=1)
    with torch.no_grad():  # BatchNorm statistics unlike a fresh model's, so a buffer lost on the way shows
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    model.eval()
    config = build_config(
        model,
        arch="resnet32",
        in_chans=1,
        head={"type": "linear"},
        label_names=fmnist.label_names,
        data_info=json.loads(json.dumps(fmnist.info.to_dict())),
        longtail=fmnist.summary(),
        ltzoo_fields={"name": "ce_resnet32.fmnist_lt"},
    )
    run = save_run(tmp_path / "run", model, config, metrics={})
    images = torch.stack([(fmnist.test[i][0].float() / 255 - 0.286) / 0.353 for i in range(16)])
    with torch.inference_mode():
        saved = model(images)
        for source in (f"local-dir:{run}", str(run)):  # a plain run directory works too
            assert torch.equal(ltzoo.load(source)(images), saved), source


def test_config_has_timm_layout_and_long_tail_fields(ce_fmnist_run):
    config = read_config(ce_fmnist_run)
    assert config["architecture"] == "resnet32" and config["num_classes"] == 10
    assert config["pretrained_cfg"]["input_size"] == [1, 28, 28]
    lt = config["ltzoo"]
    assert lt["class_counts"] == [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
    assert lt["shot_split"]["many_threshold"] == 100 and lt["shot_split"]["few"] == [8, 9]
    assert set(lt["metrics"]["test"]) == {"all", "many", "medium", "few"}
    assert lt["num_params"] == sum(p.numel() for p in ltzoo.load(str(ce_fmnist_run)).parameters())
    metrics = json.loads((ce_fmnist_run / "metrics.json").read_text())
    assert metrics["test"]["all"] == lt["metrics"]["test"]["all"]


def test_truncated_safetensors(ce_fmnist_run, tmp_path):
    run = copy_run(ce_fmnist_run, tmp_path / "run")
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CorruptFileError, match="sha256"):
        ltzoo.load(str(run))
    config = json.loads((run / "config.json").read_text())
    del config["ltzoo"]["weights_sha256"]
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(CorruptFileError, match="truncated or corrupt"):
        ltzoo.load(str(run))


def test_wrong_num_classes(ce_fmnist_run, tmp_path):
    run = copy_run(ce_fmnist_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["num_classes"] = 12
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigMismatchError, match=r"head.bias: file \(10,\) vs model \(12,\)"):
        ltzoo.load(str(run))


def test_corrupt_config(ce_fmnist_run, tmp_path):
    run = copy_run(ce_fmnist_run, tmp_path / "run")
    (run / "config.json").write_text('{"architecture": "resnet32", ')
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        ltzoo.load(str(run))
    (run / "config.json").write_text('{"hello": 1}')
    with pytest.raises(CorruptFileError, match="not an ltzoo/timm config"):
        ltzoo.load(str(run))


def test_missing_run_dir(tmp_path):
    with pytest.raises(DataNotFoundError, match=f"{tmp_path / 'nothing'} does not exist"):
        ltzoo.load(f"local-dir:{tmp_path / 'nothing'}")
    with pytest.raises(DataNotFoundError, match="not an ltzoo run directory"):  # a folder, but no run in it
        ltzoo.load(f"local-dir:{tmp_path}")
