"""Pretrained starts (issue 33): timm checkpoints as ``--init`` (a repo plain timm pushed to the local Hub, a local
folder, ``timm:NAME``), any timm architecture as a backbone through train -> export -> gate -> push -> load,
``--trainable``, and the errors for bad input. Everything real: timm's own push, the local Hub server, ONNX
Runtime."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from custom_data_fixtures import make_imagefolder
from hub_fixtures import ORG, WRITE_TOKEN, hub_env, isolated_process, local_hub  # noqa: F401 (fixtures)
from safetensors.torch import load_file

import ltzoo
from ltzoo.cli import main as ltzoo_main
from ltzoo.errors import BadHyperParameterError, ConfigMismatchError, CorruptFileError, DataNotFoundError, LtzooError
from ltzoo.planner.derived import Overrides
from ltzoo.planner.finetune import load_parent
from ltzoo.planner.plan import plan_training
from ltzoo.runs import read_config

# A pretrained_cfg unlike any default: the run must take each of these from the checkpoint.
PRETRAINED = {
    "input_size": (3, 48, 48),
    "mean": (0.5, 0.4, 0.3),
    "std": (0.2, 0.25, 0.3),
    "interpolation": "bicubic",
    "crop_pct": 0.9,
}


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """Four long-tailed classes of small RGB images."""
    return make_imagefolder(tmp_path / "parts", train=[12, 8, 5, 3], val=[3, 3, 3, 3], test=[3, 3, 3, 3])


def _timm_model(arch: str = "resnet18") -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(arch, pretrained=False, num_classes=7, pretrained_cfg_overlay=dict(PRETRAINED)).eval()


def _backbone_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    classifier = model.pretrained_cfg["classifier"] + "."
    return {k: v for k, v in model.state_dict().items() if not k.startswith(classifier)}


def test_a_timm_repo_pushed_by_timm_is_an_init_with_its_backbone_and_preprocessing(hub_env, tiny_folder, tmp_path):
    from huggingface_hub import HfApi

    pushed = _timm_model()
    # What timm's push_to_hf_hub uploads (its save_for_hf folder: config.json + model.safetensors), sent to the
    # local Hub by the same huggingface_hub call (timm's own HfApi reads the endpoint at import time only).
    timm.models.save_for_hf(pushed, str(tmp_path / "timm_repo"), safe_serialization=True)
    api = HfApi(endpoint=hub_env.url, token=WRITE_TOKEN)
    api.create_repo(f"{ORG}/timm-resnet18")
    api.upload_folder(repo_id=f"{ORG}/timm-resnet18", folder_path=str(tmp_path / "timm_repo"))
    out = tmp_path / "run"
    assert (
        ltzoo_main(
            [
                "train",
                "ce_resnet50",
                "--data",
                f"imagefolder:{tiny_folder}",
                "--init",
                f"hf-hub:{ORG}/timm-resnet18",
                "--out",
                str(out),
                "--max-steps",
                "0",
            ]
        )
        == 0
    )
    config = read_config(out)
    saved = load_file(str(out / "model.safetensors"))  # a linear head on resnet18: saved as plain timm
    for key, value in _backbone_tensors(pushed).items():
        assert torch.equal(saved[key], value), key
    assert saved["fc.weight"].shape == (4, 512)  # the head is new, for the 4 classes
    cfg = config["pretrained_cfg"]
    assert tuple(cfg["input_size"]) == PRETRAINED["input_size"] and tuple(cfg["mean"]) == PRETRAINED["mean"]
    assert tuple(cfg["std"]) == PRETRAINED["std"] and cfg["interpolation"] == "bicubic" and cfg["crop_pct"] == 0.9
    parent = config["ltzoo"]["parent"]
    assert parent["kind"] == "timm checkpoint" and parent["hub_repo_id"] == f"{ORG}/timm-resnet18"
    assert config["ltzoo"]["name"].startswith("ce_resnet18.") and config["architecture"] == "resnet18"
    # the run is a plain timm model again: timm loads it without ltzoo
    assert ltzoo.load(f"local-dir:{out}").head.weight.shape == (4, 512)


def test_a_local_timm_folder_and_its_pickle_read_weights_only(tmp_path):
    model = _timm_model()
    folder = tmp_path / "timm_folder"
    timm.models.save_for_hf(model, str(folder), safe_serialization=False)  # pytorch_model.bin only
    assert not (folder / "model.safetensors").exists() and (folder / "pytorch_model.bin").is_file()
    parent = load_parent(str(folder))
    assert parent.kind == "timm checkpoint" and parent.arch == "resnet18" and parent.preprocessing["crop_pct"] == 0.9
    for key, value in _backbone_tensors(model).items():
        assert torch.equal(parent.model.backbone.state_dict()[key], value), key

    class Payload:  # anything beyond tensors: weights_only=True refuses it
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"conv1.weight": Payload()}, folder / "pytorch_model.bin")
    with pytest.raises(CorruptFileError, match="weights_only=True"):
        load_parent(str(folder))


def test_bad_timm_checkpoints_are_named(hub_env, tmp_path):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_env.url, token=WRITE_TOKEN)
    for repo, files in {
        f"{ORG}/unknown-arch": {
            "config.json": b'{"architecture": "not_a_timm_model", "num_classes": 2, '
            b'"pretrained_cfg": {"input_size": [3, 8, 8], "mean": [0, 0, 0], '
            b'"std": [1, 1, 1]}}'
        },
        f"{ORG}/no-weights": {
            "config.json": b'{"architecture": "resnet18", "num_classes": 2, "pretrained_cfg": '
            b'{"input_size": [3, 8, 8], "mean": [0, 0, 0], "std": [1, 1, 1]}}'
        },
    }.items():
        api.create_repo(repo)
        for name, content in files.items():
            api.upload_file(path_or_fileobj=content, path_in_repo=name, repo_id=repo)
    with pytest.raises(ConfigMismatchError, match="not_a_timm_model.*not a model timm"):
        load_parent(f"hf-hub:{ORG}/unknown-arch")
    with pytest.raises(DataNotFoundError, match="has no weights"):
        load_parent(f"hf-hub:{ORG}/no-weights")
    with pytest.raises(LtzooError, match="timm names no Hub weights"):
        load_parent("timm:resnet18.no_such_tag")


def test_timm_name_offline_without_a_cache_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LtzooError, match="timm/resnet18.a1_in1k.*huggingface-cli download"):
        load_parent("timm:resnet18.a1_in1k")


def test_trainable_last_n_and_methods_that_do_not_fit_fail_before_any_data(tiny_folder):
    data = f"imagefolder:{tiny_folder}"
    with pytest.raises(BadHyperParameterError, match="last:9, but convnext_atto has 4 groups"):
        plan_training("ce_resnet50", data=data, arch="convnext_atto", overrides=Overrides(trainable="last:9"))
    with pytest.raises(BadHyperParameterError, match="RSG's feature-map generator.*no such stages"):
        plan_training("rsg_resnet50", data=data, arch="convnext_atto")
    with pytest.raises(BadHyperParameterError, match="'all', 'head' or 'last:N'"):
        plan_training("ce_resnet50", data=data, overrides=Overrides(trainable="some"))
    plan = plan_training("ce_resnet50", data=data, arch="vit_tiny_patch16_224", overrides=Overrides(trainable="last:2"))
    assert [s.train for s in plan.recipe.stages] == ["last:2"] and plan.derived["trainable"]["value"] == "last:2"


def test_last_n_trains_only_the_last_groups():
    from ltzoo.engine.objective import Objective, StageContext
    from ltzoo.models import build_model
    from ltzoo.models.backbones import trainable_groups
    from ltzoo.recipe import Recipe, StageConfig

    model = build_model("convnext_atto", 4, in_chans=3)
    stage = StageConfig(name="main", epochs=1, train="last:1")
    recipe = Recipe(method="ce", arch="convnext_atto", dataset="x", stages=[stage])
    ctx = StageContext(recipe=recipe, stage=stage, stage_index=0, data=None, steps_per_epoch=1)  # type: ignore[arg-type]
    Objective(model, ctx).set_train_mode()
    groups = trainable_groups(model.backbone)
    assert groups[-1].training and not any(g.training for g in groups[:-1]) and model.head.training


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["vit_tiny_patch16_224", "convnext_atto"])
def test_a_vit_and_a_convnext_train_export_pass_the_gate_push_and_load(arch, hub_env, tiny_folder, tmp_path):
    out, exports = tmp_path / "run", tmp_path / "onnx"
    args = [
        "train",
        "ce_resnet50",
        "--data",
        f"imagefolder:{tiny_folder}",
        "--arch",
        arch,
        "--out",
        str(out),
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
    ]
    assert ltzoo_main(args) == 0
    assert read_config(out)["architecture"] == arch
    assert ltzoo_main(["export", "--model", str(out), "--out", str(exports), "--verify", "dataset"]) == 0
    assert ltzoo_main(["push", "--model", str(out), "--repo-id", f"{ORG}/{arch}", "--onnx", str(exports)]) == 0
    model = ltzoo.load(f"hf-hub:{ORG}/{arch}")
    reference = ltzoo.load(f"local-dir:{out}")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)
    session = ltzoo.load_onnx_session(f"hf-hub:{ORG}/{arch}")
    logits = session.run(["logits"], {"input": x.numpy()})[0]
    assert torch.allclose(torch.from_numpy(logits), reference(x).detach(), atol=1e-3)
