"""Every Hub failure is one clear HubError that names the fix, leaves no half-written cache, never leaks the token."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from hub_fixtures import ORG, READ_TOKEN, WRITE_TOKEN, hub_env, isolated_process, local_hub, make_run, set_cache  # noqa: F401 (fixtures)
from huggingface_hub import CommitOperationAdd, HfApi
from ports import free_port

import ltzoo
from ltzoo.errors import HubError
from ltzoo.hub.download import download_run
from ltzoo.hub.settings import hub_settings
from ltzoo.publish.push import push_run
from ltzoo.runs import load_run

REPO = f"{ORG}/ce_resnet32.fmnist_lt"
BAD_TOKEN = "hf_ThisTokenIsWrongAndSecret0123456789"


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(7)))


def _cached_files(cache: Path) -> list[str]:
    """Downloaded content in an HF cache (locks and ref pointers are bookkeeping, not content)."""
    if not cache.exists():
        return []
    return sorted(
        str(p.relative_to(cache))
        for p in cache.rglob("*")
        if (p.is_file() or p.is_symlink()) and ".locks" not in p.parts and "refs" not in p.parts
    )


@pytest.fixture
def pushed(hub_env, tmp_path: Path) -> Path:
    run = make_run(tmp_path / "run", seed=0)
    push_run(run, REPO)
    return run


def test_offline_mode_loads_from_the_cache_without_any_server(hub_env, pushed, tmp_path, monkeypatch):
    cache = set_cache(monkeypatch, tmp_path / "home")
    sha = HfApi(endpoint=hub_env.url).model_info(REPO).sha
    ltzoo.load(f"hf-hub:{REPO}")  # fills the cache
    hub_env.server.stop()  # from here on nothing answers
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set after import: read at call time
    model = ltzoo.load(f"hf-hub:{REPO}")
    assert torch.equal(_logits(model), _logits(load_run(pushed)[0]))
    assert torch.equal(_logits(ltzoo.load(f"hf-hub:{REPO}@{sha}")), _logits(model))  # a pinned commit too
    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set"):  # a revision that was never cached
        ltzoo.load(f"hf-hub:{REPO}@dev")
    assert any(f.endswith("model.safetensors") for f in _cached_files(cache))


def test_offline_mode_without_a_cache_fails_clearly(hub_env, pushed, tmp_path, monkeypatch):
    cache = set_cache(monkeypatch, tmp_path / "empty-home")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set and the files are not in the Hub cache") as info:
        ltzoo.load(f"hf-hub:{REPO}")
    assert str(cache) in str(info.value) and "Unset HF_HUB_OFFLINE" in str(info.value)
    assert _cached_files(cache) == []


@pytest.fixture
def no_backoff_waits(monkeypatch):
    """huggingface_hub retries a failed HEAD 5 times with 1+2+4+8+8 s waits when nothing is cached. The
    connection attempts still happen for real (to a closed port); only the sleeps between them are skipped
    (``time.sleep`` is the only ``time`` function that module uses)."""
    import types

    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http, "time", types.SimpleNamespace(sleep=lambda seconds: None))


def test_dead_server_is_a_clear_error_and_writes_nothing(tmp_path, monkeypatch, no_backoff_waits):
    cache = set_cache(monkeypatch, tmp_path / "home")
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HF_ENDPOINT", dead)
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(HubError, match="cannot be reached") as info:
        download_run(REPO)
    assert dead in str(info.value) and "HF_HUB_OFFLINE=1" in str(info.value)
    assert _cached_files(cache) == []
    with pytest.raises(HubError, match="cannot be reached"):
        push_run(make_run(tmp_path / "run"), REPO)


def test_dead_server_with_a_cached_revision_still_loads(hub_env, pushed, tmp_path, monkeypatch):
    # huggingface_hub falls back to the cached snapshot of `main` when the Hub is down; ltzoo keeps that.
    set_cache(monkeypatch, tmp_path / "home")
    ltzoo.load(f"hf-hub:{REPO}")
    hub_env.server.stop()
    assert torch.equal(_logits(ltzoo.load(f"hf-hub:{REPO}")), _logits(load_run(pushed)[0]))


@pytest.mark.parametrize(
    ("token", "status"), [(BAD_TOKEN, 403), (READ_TOKEN, 403)], ids=["unknown-token", "read-only-token"]
)
def test_push_with_a_refused_token(hub_env, tmp_path, monkeypatch, token, status):
    monkeypatch.setenv("HF_TOKEN", token)
    with pytest.raises(HubError, match=f"refused the token \\(HTTP {status}\\)") as info:
        push_run(make_run(tmp_path / "run"), REPO)
    assert "HF_TOKEN" in str(info.value) and token not in str(info.value)


def test_push_without_a_token_says_how_to_give_one(hub_env, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match="needs a write token: set HF_TOKEN or pass --token"):
        push_run(make_run(tmp_path / "run"), REPO)


def test_download_with_an_invalid_token_is_401(hub_env, pushed, tmp_path, monkeypatch):
    cache = set_cache(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("HF_TOKEN", BAD_TOKEN)
    with pytest.raises(HubError, match=r"refused the token \(HTTP 401\)") as info:
        download_run(REPO)
    assert BAD_TOKEN not in str(info.value)
    assert _cached_files(cache) == []


def test_the_token_never_appears_in_errors_logs_or_output(hub_env, pushed, tmp_path, monkeypatch, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # every logger, huggingface_hub's included
    messages = []
    monkeypatch.setenv("HF_TOKEN", BAD_TOKEN)
    for call in (lambda: push_run(pushed, REPO), lambda: download_run(REPO), lambda: download_run(f"{ORG}/missing")):
        with pytest.raises(HubError) as info:
            call()
        messages.append(str(info.value))
        messages.append(repr(info.value.__cause__) + repr(info.value.__context__))
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    with pytest.raises(HubError) as info:  # a failure while authorised (stale parent commit)
        push_run(pushed, REPO, parent_commit="0" * 40)
    messages.append(str(info.value))
    messages.append(repr(hub_settings()))
    captured = capfd.readouterr()
    everything = "\n".join(messages + [r.getMessage() for r in caplog.records] + [captured.out, captured.err])
    for token in (BAD_TOKEN, WRITE_TOKEN):
        assert token not in everything
    assert "refused the token" in everything  # the failures did happen and were reported


def test_sha_mismatch_removes_the_cache_entry_and_the_next_call_downloads_again(hub_env, pushed, tmp_path, monkeypatch):
    set_cache(monkeypatch, tmp_path / "home")
    weights = download_run(REPO) / "model.safetensors"
    blob = weights.resolve()
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte: still the right size, wrong content
    blob.write_bytes(bytes(data))
    with pytest.raises(HubError, match="sha256") as info:
        download_run(REPO)
    assert "deleted" in str(info.value)
    assert not weights.exists() and not weights.is_symlink() and not blob.exists()
    folder = download_run(REPO)  # re-downloaded, verified
    assert torch.equal(_logits(load_run(folder)[0]), _logits(load_run(pushed)[0]))


def test_pinned_sha_that_the_hub_file_does_not_match(hub_env, pushed, tmp_path, monkeypatch):
    cache = set_cache(monkeypatch, tmp_path / "home")
    with pytest.raises(HubError, match="expected " + "ab" * 32) as info:
        download_run(REPO, expected_sha256="ab" * 32)
    assert "update the pinned sha256" in str(info.value)
    assert not any(f.endswith("model.safetensors") for f in _cached_files(cache))


def test_weights_replaced_on_the_hub_by_something_else_are_caught(hub_env, pushed, tmp_path, monkeypatch):
    # Someone uploads other bytes as model.safetensors but keeps ltzoo's config.json (and its sha256).
    HfApi(endpoint=hub_env.url, token=WRITE_TOKEN).create_commit(
        REPO, [CommitOperationAdd("model.safetensors", b"not the weights")], commit_message="overwrite"
    )
    set_cache(monkeypatch, tmp_path / "home")
    with pytest.raises(HubError, match="sha256"):
        ltzoo.load(f"hf-hub:{REPO}")


def test_missing_repo_and_missing_revision(hub_env, pushed, tmp_path, monkeypatch):
    cache = set_cache(monkeypatch, tmp_path / "home")
    with pytest.raises(HubError, match=f"repo {ORG}/nope does not exist at {hub_env.url}"):
        ltzoo.load(f"hf-hub:{ORG}/nope")
    with pytest.raises(HubError, match="revision 'v9' does not exist") as info:
        ltzoo.load(f"hf-hub:{REPO}@v9")
    assert "list_repo_refs" in str(info.value)
    assert _cached_files(cache) == []


def test_repo_pushed_by_something_else_has_no_ltzoo_config(hub_env, tmp_path, monkeypatch):
    api = HfApi(endpoint=hub_env.url, token=WRITE_TOKEN)
    api.create_repo(f"{ORG}/timm-model")
    timm_config = {"architecture": "resnet18", "num_classes": 1000, "pretrained_cfg": {"input_size": [3, 224, 224]}}
    api.create_commit(
        f"{ORG}/timm-model",
        [
            CommitOperationAdd("config.json", json.dumps(timm_config).encode()),
            CommitOperationAdd("model.safetensors", b"x"),
        ],
        commit_message="timm",
    )
    api.create_repo(f"{ORG}/empty")
    set_cache(monkeypatch, tmp_path / "home")
    with pytest.raises(HubError, match="without an 'ltzoo' block, so it was not pushed by ltzoo") as info:
        ltzoo.load(f"hf-hub:{ORG}/timm-model")
    assert "ltzoo push" in str(info.value)
    with pytest.raises(HubError, match="has no config.json, so it was not pushed by ltzoo"):
        ltzoo.load(f"hf-hub:{ORG}/empty")


def test_stale_parent_commit_is_refused_with_412_and_nothing_is_committed(hub_env, pushed, tmp_path):
    api = HfApi(endpoint=hub_env.url, token=WRITE_TOKEN)
    stale = api.list_repo_commits(REPO)[-1].commit_id  # the initial commit, long superseded
    before = [c.commit_id for c in api.list_repo_commits(REPO)]
    with pytest.raises(HubError, match="HTTP 412") as info:
        push_run(make_run(tmp_path / "other", seed=5), REPO, parent_commit=stale)
    assert "Run the push again" in str(info.value)
    assert [c.commit_id for c in api.list_repo_commits(REPO)] == before


def test_settings_are_read_at_call_time(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1/")
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    s = hub_settings()
    assert (s.endpoint, s.offline, s.cache_dir, s.token) == ("http://127.0.0.1:1", True, tmp_path / "c", "hf_x")
    assert "hf_x" not in repr(s)
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert hub_settings(endpoint="http://e").endpoint == "http://e"
    assert hub_settings().cache_dir == tmp_path / "home" / "hub" and not hub_settings().offline
