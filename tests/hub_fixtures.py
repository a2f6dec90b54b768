"""Fixtures for the Hub tests: a live local Hub server, a fresh HF cache per test, and tiny run directories.

Run directories are written with ltzoo's own run writer (``ltzoo.runs.build_config`` + ``save_run``)
around a randomly initialised ResNet-32, with hand-chosen metrics, so a test knows every number the
card must carry without training anything.
"""

from __future__ import annotations

import json
import math
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from ltzoo.data.longtail import shot_split
from ltzoo.models import build_model
from ltzoo.runs import build_config, save_run
from ltzoo.testing.hub_server import LocalHub

WRITE_TOKEN = "hf_ltzooTestWriteToken0123456789abcdef"
READ_TOKEN = "hf_ltzooTestReadToken0123456789abcdef"
USER = "tester"
ORG = "ltzoo-test"
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# fmnist_lt's profile, computed here by hand: n_i = floor(1000 * 100^(-i/9)).
CLASS_COUNTS = [math.floor(1000 * 100 ** (-i / 9)) for i in range(10)]


@dataclass
class HubHandle:
    url: str
    server: LocalHub
    write_token: str = WRITE_TOKEN
    read_token: str = READ_TOKEN
    org: str = ORG


@pytest.fixture(autouse=True)
def isolated_process(monkeypatch: pytest.MonkeyPatch):
    """Per test: one torch intra-op thread (the tiny forward passes run ~8x faster on a busy 2-core machine),
    and no outbound request from huggingface_hub's agent detection, which otherwise fetches a registry from
    huggingface.co once per process when it first builds request headers (tests use no network)."""
    from huggingface_hub.utils import _detect_agent

    monkeypatch.setattr(_detect_agent, "_registry", _detect_agent._EMPTY_REGISTRY)
    # Every name lookup is recorded; a test that tried to reach anything but the local server fails.
    outside: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def local_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            outside.append(str(host))
            raise OSError(f"tests use no network (tried {host})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
    assert not outside, f"the test tried to reach {outside}"


@pytest.fixture
def local_hub(tmp_path: Path):
    """A Hub-compatible server on a free 127.0.0.1 port, with a write token and a read-only token."""
    tokens = {
        WRITE_TOKEN: {"user": USER, "orgs": [ORG], "role": "write"},
        READ_TOKEN: {"user": "reader", "orgs": [], "role": "read"},
    }
    with LocalHub(tmp_path / "hub-data", tokens) as server:
        yield HubHandle(url=server.url, server=server)


@pytest.fixture
def hub_env(local_hub: HubHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubHandle:
    """Point the environment at the local hub and a fresh, empty HF cache (read at call time by ltzoo)."""
    set_cache(monkeypatch, tmp_path / "hf-home")
    monkeypatch.setenv("HF_ENDPOINT", local_hub.url)
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return local_hub


def set_cache(monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    """Use a new HF_HOME / HF_HUB_CACHE; returns the hub cache folder."""
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    return home / "hub"


def metrics_for(seed: int) -> dict[str, Any]:
    """Distinct, hand-chosen numbers per seed (percent), as the evaluator writes them."""
    shots = shot_split(CLASS_COUNTS)
    out: dict[str, Any] = {"name": "ce_resnet32.fmnist_lt", "selected": {"stage": "main", "epoch": 1, "val_all": 0.0}}
    for offset, split in enumerate(("val", "test")):
        per_class = [round(90.0 - 7.5 * c + offset + seed, 2) for c in range(10)]
        groups = {
            g: round(sum(per_class[c] for c in cls) / len(cls), 4)
            for g, cls in (("many", shots.many), ("medium", shots.medium), ("few", shots.few))
        }
        out[split] = {
            "all": 61.25 + offset + seed,
            **groups,
            "per_class": per_class,
            "num_samples": 1000,
            "split": split,
        }
    out["selected"]["val_all"] = out["val"]["all"]
    return out


def make_run(
    run_dir: Path,
    seed: int = 0,
    method: str = "ce",
    *,
    arch: str = "resnet32",
    in_chans: int = 1,
    input_size: tuple[int, int] = (28, 28),
    head: dict[str, Any] | None = None,
) -> Path:
    """A complete run directory: model.safetensors + config.json (timm layout + ltzoo block) + metrics.json.
    By default the fmnist_lt ResNet-32; ``arch`` / ``in_chans`` / ``input_size`` / ``head`` make others cheaply
    (random weights, nothing trained)."""
    head = dict(head or {"type": "linear"})
    torch.manual_seed(seed)
    model = build_model(arch, 10, in_chans=in_chans, head=head).eval()
    shots = shot_split(CLASS_COUNTS)
    metrics = metrics_for(seed)
    recipe = {
        "method": method,
        "arch": arch,
        "dataset": "fmnist_lt",
        "seed": seed,
        "head": head,
        "method_args": {},
        "num_workers": 0,
        "notes": "test run",
        "stages": [
            {
                "name": "main",
                "epochs": 1,
                "batch_size": 16,
                "lr": 0.1,
                "momentum": 0.9,
                "weight_decay": 5e-4,
                "nesterov": False,
                "warmup_epochs": 0,
                "schedule": "cosine",
                "milestones": [],
                "gamma": 0.1,
                "sampler": "instance",
                "train": "all",
                "select_on_val": True,
            }
        ],
    }
    config = build_config(
        model,
        arch=arch,
        in_chans=in_chans,
        head=head,
        label_names=LABELS,
        data_info={
            "num_classes": 10,
            "in_chans": in_chans,
            "input_size": list(input_size),
            "mean": [0.286] * in_chans,
            "std": [0.353] * in_chans,
            "augment": "fmnist",
            "class_counts": CLASS_COUNTS,
            "train_size": sum(CLASS_COUNTS),
            "interpolation": "bilinear",
            "crop_pct": 1.0,
        },
        longtail={
            "dataset": "fmnist_lt",
            "num_classes": 10,
            "class_counts": CLASS_COUNTS,
            "imbalance_factor": 100.0,
            "split_sizes": {"train": sum(CLASS_COUNTS), "val": 1000, "test": 10000},
            "shot_split": shots.to_dict(),
            "index_sha256": "0" * 64,
            "source": "test",
        },
        ltzoo_fields={
            "name": f"{method}_{arch}.fmnist_lt",
            "method": method,
            "arch": arch,
            "recipe": recipe,
            "seed": seed,
            "selected": metrics["selected"],
            "metrics": {s: {g: metrics[s][g] for g in ("all", "many", "medium", "few")} for s in ("val", "test")},
        },
    )
    save_run(run_dir, model, config, metrics)
    return run_dir


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
