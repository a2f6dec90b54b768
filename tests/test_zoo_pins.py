"""Zoo pins as data: publish-zoo writes them, the registry serves them, ``ltzoo.load(NAME)`` downloads them.

The end-to-end test trains a tiny entry (the session's short CE run), publishes it to the local Hub, and
loads it by its zoo name in a fresh process that knows only ``HF_ENDPOINT``, an empty cache and the pins
file; then offline, with the Hub unreachable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_fixtures import ORG, hub_env, isolated_process, local_hub, make_run, set_cache  # noqa: F401 (fixtures)

import ltzoo
from ltzoo.cli import main as ltzoo_main
from ltzoo.errors import CorruptFileError, HubError
from ltzoo.fileio import sha256_file
from ltzoo.pins import HeadlineMetrics, HubWeights, load_pins, packaged_pins_path, write_pins
from ltzoo.runs import load_run

ROOT = Path(__file__).resolve().parents[1]
NAME = "ce_resnet32.fmnist_lt"
REVISION = "0123456789abcdef0123456789abcdef01234567"
SHA = "ab" * 32

# Runs in a fresh process: load by zoo name online, then offline with the Hub gone; save both logits.
LOAD_BY_NAME = """
import os, sys
import numpy as np, torch
torch.set_num_threads(1)
import ltzoo
x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(11))
with torch.no_grad():
    online = ltzoo.load(sys.argv[1])(x).numpy()
    os.environ["HF_HUB_OFFLINE"] = "1"          # ltzoo reads it at call time
    os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens there: a request would fail
    offline = ltzoo.load(sys.argv[1])(x).numpy()
np.save(sys.argv[2], np.stack([online, offline]))
"""


def _logits(model: torch.nn.Module) -> np.ndarray:
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        return model(x).numpy()


def test_packaged_pins_file_is_valid_and_pins_only_zoo_entries():
    pins = load_pins(packaged_pins_path())
    assert set(pins) <= set(ltzoo.list_models())
    assert packaged_pins_path().parent == Path(ltzoo.__file__).parent  # package data, next to the code


def test_pins_merge_and_serve_list_and_info(tmp_path, monkeypatch, capsys):
    pins = tmp_path / "pins.json"
    monkeypatch.setenv("LTZOO_PINS", str(pins))
    headline = HeadlineMetrics("test", 80.5, 90.0, 70.25, None)
    write_pins(pins, {NAME: HubWeights(f"{ORG}/{NAME}", REVISION, SHA, headline)})
    write_pins(pins, {"ldam_drw_resnet32.fmnist_lt": HubWeights(f"{ORG}/ldam", REVISION, SHA)})  # merged, not replaced
    assert ltzoo.list_models(pretrained=True) == [NAME, "ldam_drw_resnet32.fmnist_lt"]
    assert ltzoo.list_models("ce*", pretrained=True) == [NAME]
    entry = ltzoo.get_entry(NAME)
    assert entry.published and entry.weights.metrics.medium == 70.25 and entry.weights.revision == REVISION
    assert not ltzoo.get_entry("ce_resnet32.cifar10_lt").published

    assert ltzoo_main(["list", "--pretrained"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        NAME,
        f"{ORG}/{NAME}@{REVISION[:12]}",
        "test",
        "top-1",
        "%",
        "all",
        "80.50",
        "many",
        "90.00",
        "medium",
        "70.25",
        "few",
        "-",
    ]
    assert "no metrics pinned" in lines[1]
    assert ltzoo_main(["info", NAME, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["weights"]["metrics"]["all"] == 80.5

    # The file is re-read when it changes: no re-import, no restart.
    pins.write_text(json.dumps({"format": 1, "pins": {}}))
    assert ltzoo.list_models(pretrained=True) == []
    assert ltzoo_main(["list", "--pretrained"]) == 0
    assert "has pinned weights" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("pin", "message"),
    [
        ({"repo_id": "nope", "revision": REVISION, "sha256": SHA}, "repo_id 'nope' is not ORG/NAME"),
        ({"repo_id": "o/n", "revision": "main", "sha256": SHA}, "a branch name is no pin"),
        ({"repo_id": "o/n", "revision": REVISION, "sha256": "x"}, "is not 64 hex digits"),
        ({"repo_id": "o/n", "revision": REVISION, "sha256": SHA, "metrics": {"all": "high"}}, "must hold numbers"),
    ],
)
def test_a_bad_pin_names_the_entry_and_the_fix(tmp_path, pin, message):
    path = tmp_path / "pins.json"
    path.write_text(json.dumps({"format": 1, "pins": {NAME: pin}}))
    with pytest.raises(CorruptFileError, match=f"{NAME}: .*{message}.*re-run `ltzoo publish-zoo`"):
        load_pins(path)


def test_a_missing_pins_override_is_an_error_not_an_empty_zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("LTZOO_PINS", str(tmp_path / "typo.json"))
    with pytest.raises(CorruptFileError, match="typo.json, which does not exist"):
        ltzoo.list_models(pretrained=True)


@pytest.mark.slow
def test_publish_then_load_by_zoo_name_in_a_fresh_process_and_offline(ce_fmnist_run, hub_env, tmp_path):
    pins = tmp_path / "pins.json"
    code = ltzoo_main(["publish-zoo", "--namespace", ORG, "--runs", str(ce_fmnist_run.parent), "--pins", str(pins)])
    assert code == 0
    pin = load_pins(pins)[NAME]
    assert pin.sha256 == sha256_file(ce_fmnist_run / "model.safetensors")
    recorded = json.loads((ce_fmnist_run / "metrics.json").read_text())["test"]
    assert pin.metrics.all == round(recorded["all"], 2) and pin.metrics.few == round(recorded["few"], 2)

    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "LTZOO_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        HF_ENDPOINT=hub_env.url,
        HF_HOME=str(tmp_path / "empty-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        LTZOO_PINS=str(pins),
        OMP_NUM_THREADS="1",
    )
    out = tmp_path / "logits.npy"
    result = subprocess.run(
        [sys.executable, "-c", LOAD_BY_NAME, NAME, str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    online, offline = np.load(out)
    expected = _logits(load_run(ce_fmnist_run)[0])
    np.testing.assert_array_equal(online, expected)
    np.testing.assert_array_equal(offline, expected)
    snapshot = tmp_path / "empty-home" / "hub" / f"models--{ORG}--{NAME}" / "snapshots" / pin.revision
    assert (snapshot / "model.safetensors").is_file()  # it came through the (new) cache, at the pinned commit


def test_a_pinned_sha256_that_does_not_match_is_refused_and_evicted(hub_env, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    make_run(runs / "ce", seed=0)
    pins = tmp_path / "pins.json"
    assert ltzoo_main(["publish-zoo", "--namespace", ORG, "--runs", str(runs), "--pins", str(pins)]) == 0
    good = load_pins(pins)[NAME]
    monkeypatch.setenv("LTZOO_PINS", str(pins))
    cache = set_cache(monkeypatch, tmp_path / "fresh-home")

    write_pins(pins, {NAME: HubWeights(good.repo_id, good.revision, "0" * 64, good.metrics)})
    with pytest.raises(HubError, match=f"has sha256 {good.sha256}, expected {'0' * 64}.*deleted.*update the pinned"):
        ltzoo.load(NAME)
    snapshot = cache / f"models--{ORG}--{NAME}" / "snapshots" / good.revision
    assert (snapshot / "config.json").is_file() and not (snapshot / "model.safetensors").exists()
    assert not [
        blob for blob in (cache / f"models--{ORG}--{NAME}" / "blobs").iterdir() if sha256_file(blob) == good.sha256
    ]  # the blob went too, not only the link

    write_pins(pins, {NAME: good})  # the right pin: downloaded again, and loads
    assert np.array_equal(_logits(ltzoo.load(NAME)), _logits(load_run(runs / "ce")[0]))
    # Offline after that one load: from the cache, no Hub needed.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert np.array_equal(_logits(ltzoo.load(NAME)), _logits(load_run(runs / "ce")[0]))
