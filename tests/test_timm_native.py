"""Repos that timm loads: plain timm for a linear-head ResNet-50 (in a process that never imports ltzoo),
timm after `import ltzoo` for ResNet-32 and ltzoo's heads, and runs saved in the earlier format."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import yaml
from hub_fixtures import ORG, hub_env, isolated_process, local_hub, make_run  # noqa: F401 (fixtures)
from huggingface_hub import hf_hub_download
from safetensors.torch import load_file, save_file

import ltzoo
from ltzoo.models import build_model
from ltzoo.models.heads import LogitAdjustedHead
from ltzoo.models.timm_layout import timm_loading
from ltzoo.publish.push import push_run
from ltzoo.runs import save_run

# Runs in a fresh interpreter: loads SOURCE with timm (after `import ltzoo` when asked), as-is, with
# num_classes=5 and with features_only=True, and writes the outputs on INPUTS to OUT. No network.
TIMM_SCRIPT = r"""
import json, socket, sys
_real_getaddrinfo = socket.getaddrinfo
def _local_only(host, *args, **kwargs):
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise OSError(f"tests use no network (tried {host})")
    return _real_getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = _local_only

source, inputs, out, import_ltzoo = sys.argv[1:5]
if import_ltzoo == "yes":
    import ltzoo  # noqa: F401  registers ltzoo's models with timm
import timm, torch
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)
x = load_file(inputs)["x"]
model = timm.create_model(source, pretrained=True).eval()
five = timm.create_model(source, pretrained=True, num_classes=5).eval()
features = timm.create_model(source, pretrained=True, features_only=True).eval()
with torch.no_grad():
    maps = features(x)
    save_file({"logits": model(x), "five": five(x), "trunk": model.forward_features(x),
               "five_trunk": five.forward_features(x), **{f"map{i}": m.contiguous() for i, m in enumerate(maps)}}, out)
print(json.dumps({"class": type(model).__name__, "ltzoo_imported": "ltzoo" in sys.modules,
                  "feature_channels": features.feature_info.channels()}))
"""


def _inputs(in_chans: int, size: int, path: Path) -> torch.Tensor:
    x = torch.randn(2, in_chans, size, size, generator=torch.Generator().manual_seed(7))
    save_file({"x": x}, str(path))
    return x


def _timm_in_fresh_process(source: str, x_path: Path, out: Path, import_ltzoo: bool, cache: Path) -> dict:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "OMP_NUM_THREADS": "1"}  # a cache ltzoo never filled
    result = subprocess.run(
        [sys.executable, "-c", TIMM_SCRIPT, source, str(x_path), str(out), "yes" if import_ltzoo else "no"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _card_meta_and_body(hub, repo: str, tmp_path: Path) -> tuple[dict, str]:
    text = Path(hf_hub_download(repo, "README.md", endpoint=hub.url, cache_dir=tmp_path / "inspect")).read_text()
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.S)
    assert match
    return yaml.safe_load(match.group(1)), match.group(2)


def test_plain_timm_loads_a_pushed_resnet50_run_without_ltzoo(hub_env, tmp_path):
    run = make_run(tmp_path / "r50", arch="resnet50", in_chans=3, input_size=(64, 64))
    config = json.loads((run / "config.json").read_text())
    # timm passes model_args to ResNet(); the head is ltzoo's business and lives in the ltzoo block.
    assert config["architecture"] == "resnet50" and config["model_args"] == {"in_chans": 3}
    assert config["ltzoo"]["head"] == {"type": "linear"} and config["ltzoo"]["arch"] == "resnet50"
    cfg = config["pretrained_cfg"]
    assert (cfg["classifier"], cfg["first_conv"], cfg["pool_size"]) == ("fc", "conv1", [2, 2])  # 64 px / 32
    assert set(load_file(str(run / "model.safetensors"))) == set(
        timm.create_model("resnet50", num_classes=10).state_dict()
    )

    repo = f"{ORG}/ce_resnet50.fmnist_lt"
    push_run(run, repo)
    meta, body = _card_meta_and_body(hub_env, repo, tmp_path)
    assert "timm" in meta["tags"] and "loads with plain timm" in body

    x = _inputs(3, 64, tmp_path / "x.safetensors")
    report = _timm_in_fresh_process(
        f"hf-hub:{repo}",
        tmp_path / "x.safetensors",
        tmp_path / "out.safetensors",
        import_ltzoo=False,
        cache=tmp_path / "timm-cache",
    )
    assert report == {"class": "ResNet", "ltzoo_imported": False, "feature_channels": [64, 256, 512, 1024, 2048]}
    out = load_file(str(tmp_path / "out.safetensors"))
    model = ltzoo.load(f"hf-hub:{repo}")
    with torch.no_grad():
        assert torch.equal(out["logits"], model(x))
        trunk = model.forward_features(x)
    assert out["five"].shape == (2, 5)
    assert torch.equal(out["five_trunk"], trunk)  # num_classes=5 keeps the trained backbone, only fc is new
    assert torch.equal(out["map4"], trunk) and out["map0"].shape == (2, 64, 32, 32)


def test_timm_loads_a_pushed_resnet32_run_after_import_ltzoo(hub_env, tmp_path):
    run = make_run(tmp_path / "r32")
    repo = f"{ORG}/ce_resnet32.fmnist_lt"
    push_run(run, repo)
    meta, body = _card_meta_and_body(hub_env, repo, tmp_path)
    assert "timm" in meta["tags"] and "loads with timm after `import ltzoo`" in body

    x = _inputs(1, 28, tmp_path / "x.safetensors")
    report = _timm_in_fresh_process(
        f"hf-hub:{repo}",
        tmp_path / "x.safetensors",
        tmp_path / "out.safetensors",
        import_ltzoo=True,
        cache=tmp_path / "timm-cache",
    )
    assert report == {"class": "LTClassifier", "ltzoo_imported": True, "feature_channels": [16, 16, 32, 64]}
    out = load_file(str(tmp_path / "out.safetensors"))
    model = ltzoo.load(f"hf-hub:{repo}")
    with torch.no_grad():
        assert torch.equal(out["logits"], model(x))
        trunk = model.forward_features(x)
    assert out["five"].shape == (2, 5) and torch.equal(out["five_trunk"], trunk)
    assert torch.equal(out["map3"], trunk) and out["map1"].shape == (2, 16, 28, 28)


def _head_case(kind: str) -> tuple[str, int, torch.nn.Module, dict]:
    if kind == "logit_adjusted":  # a real (non-uniform) training prior, so a lost log_prior would show
        model = build_model("resnet32", 10, in_chans=1, head={"type": "etf"})
        model.head = LogitAdjustedHead(64, 10, base={"type": "etf"}, tau=0.7, class_counts=[2**i for i in range(10)])
        return "resnet32", 1, model, model.head.config_spec()
    if kind == "resnet50_cosine":
        return "resnet50", 3, build_model("resnet50", 10, head={"type": "cosine"}), {"type": "cosine"}
    head = {"cosine": {"type": "cosine"}, "etf": {"type": "etf", "lift_dim": 16}}[kind]
    return "resnet32", 1, build_model("resnet32", 10, in_chans=1, head=head), head


@pytest.mark.parametrize("kind", ["cosine", "etf", "logit_adjusted", "resnet50_cosine"])
def test_ltzoo_heads_load_through_timm_with_the_same_logits(kind, tmp_path):
    from ltzoo.runs import build_config

    torch.manual_seed(0)
    arch, in_chans, model, head = _head_case(kind)
    model.eval()
    info = {
        "num_classes": 10,
        "in_chans": in_chans,
        "input_size": [32, 32],
        "mean": [0.5] * in_chans,
        "std": [0.25] * in_chans,
        "augment": "cifar",
    }
    config = build_config(
        model,
        arch=arch,
        in_chans=in_chans,
        head=head,
        label_names=list("abcdefghij"),
        data_info=info,
        longtail={"dataset": "synthetic"},
        ltzoo_fields={},
    )
    run = save_run(tmp_path / kind, model, config, {})
    assert config["architecture"] == ("ltzoo_resnet50" if arch == "resnet50" else "resnet32")
    assert config["model_args"] == {"in_chans": in_chans, "head": head} and timm_loading(config) == "timm+ltzoo"

    x = torch.randn(2, in_chans, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(timm.create_model(f"local-dir:{run}", pretrained=True).eval()(x), expected)
        assert torch.equal(ltzoo.load(f"local-dir:{run}")(x), expected)
        # A new class count drops what no longer fits (an ETF matrix, a prior) and keeps the backbone.
        three = timm.create_model(f"local-dir:{run}", pretrained=True, num_classes=3).eval()
        assert three(x).shape == (2, 3) and torch.equal(three.forward_features(x), model.forward_features(x))


# ----- runs saved before the timm-native layout -------------------------------------------------
def _save_format1_run(out: Path, model: torch.nn.Module, arch: str, head: dict, data_info: dict) -> Path:
    """What ltzoo wrote before format 2: LTClassifier's keys, the head in model_args, crop_mode "center"."""
    from ltzoo.runs import atomic_save_state_dict, atomic_write_json

    out.mkdir(parents=True)
    sha = atomic_save_state_dict(model.state_dict(), out / "model.safetensors")
    height, width = data_info["input_size"]
    atomic_write_json(
        out / "config.json",
        {
            "architecture": arch,
            "num_classes": model.num_classes,
            "num_features": model.num_features,
            "global_pool": "avg",
            "label_names": [f"c{i}" for i in range(model.num_classes)],
            "model_args": {"in_chans": data_info["in_chans"], "head": head},
            "pretrained_cfg": {
                "tag": "synthetic",
                "input_size": [data_info["in_chans"], height, width],
                "interpolation": "bilinear",
                "crop_pct": 1.0,
                "crop_mode": "center",
                "mean": data_info["mean"],
                "std": data_info["std"],
                "num_classes": model.num_classes,
                "classifier": "head",
                "license": "apache-2.0",
            },
            "ltzoo": {
                "format_version": 1,
                "num_params": sum(p.numel() for p in model.parameters()),
                "data_info": data_info,
                "dataset": "imagefolder:/data/parts",
                "weights_sha256": sha,
            },
        },
    )
    return out


def test_a_run_saved_in_the_earlier_format_still_loads(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet50", 4).eval()
    info = {
        "num_classes": 4,
        "in_chans": 3,
        "input_size": [48, 40],
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "augment": "generic",
    }
    run = _save_format1_run(tmp_path / "old", model, "resnet50", {"type": "linear"}, info)
    loaded, config = ltzoo.load(f"local-dir:{run}", with_config=True)
    x = torch.randn(2, 3, 48, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # The preprocessing is the evaluator's for that data (user images were squashed, not centre-cropped) ...
    data = ltzoo.data_config(loaded)
    assert (data.crop_mode, data.input_size) == ("squash", (3, 48, 40)) and ltzoo.data_config(str(run)) == data
    assert loaded.pretrained_cfg["classifier"] == "head" and loaded.pretrained_cfg["first_conv"] == "backbone.conv1"
    # ... and nothing claims that timm loads these weights: their names are not timm's.
    assert timm_loading(config) is None
