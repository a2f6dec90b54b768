"""What leaves the machine names none of its folders: portable forms, the push-time check, committed results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hub_fixtures import isolated_process, make_run  # noqa: F401 (fixture)

from benchmarks.common import repo_relative_paths
from ltzoo.data.sources import SourceSpec
from ltzoo.errors import HubError
from ltzoo.portable import local_paths_in, machine_needles, portable_config, portable_model_source
from ltzoo.publish.push import push_run
from ltzoo.runs import atomic_write_json, read_config

ROOT = Path(__file__).resolve().parents[1]


def test_sources_are_recorded_by_folder_name_with_their_options(tmp_path):
    spec = SourceSpec.parse(f"imagefolder:{tmp_path}/defects?chans=1&shots=terciles")
    assert spec.name == f"imagefolder:{tmp_path}/defects?chans=1&shots=terciles"  # this machine's run
    assert spec.portable_name == "imagefolder:defects?chans=1&shots=terciles"  # what is published
    assert portable_model_source(f"local-dir:{tmp_path}/runs/ce/") == "local-dir:ce"
    assert portable_model_source(str(tmp_path / "runs" / "ce")) == "local-dir:ce"
    for kept in ("hf-hub:org/repo@main", "ce_resnet32.fmnist_lt"):
        assert portable_model_source(kept) == kept


def test_portable_config_rewrites_every_source_and_keeps_the_local_one(tmp_path):
    source = f"splits:{tmp_path}/parts?chans=3"
    config = {
        "pretrained_cfg": {"tag": source},
        "ltzoo": {
            "dataset": source,
            "recipe": {"dataset": source},
            "source": {"kind": "splits", "path": f"{tmp_path}/parts"},
            "parent": {"source": f"{tmp_path}/runs/base", "dataset": f"imagefolder:{tmp_path}/old"},
        },
    }
    before = json.dumps(config)
    portable = portable_config(config)
    assert json.dumps(config) == before  # a copy: the run keeps its local record
    assert str(tmp_path) not in json.dumps(portable)
    assert portable["ltzoo"]["dataset"] == portable["pretrained_cfg"]["tag"] == "splits:parts?chans=3"
    assert portable["ltzoo"]["source"]["path"] == "parts" and portable["ltzoo"]["parent"]["source"] == "local-dir:base"
    assert portable["ltzoo"]["parent"]["dataset"] == "imagefolder:old"


def test_local_paths_are_found_in_bytes_and_in_large_files_across_chunks(tmp_path, monkeypatch):
    needles = machine_needles([tmp_path / "run"])
    assert str(tmp_path / "run") in needles and "/" not in needles
    assert local_paths_in(f'{{"x": "{tmp_path}/run"}}'.encode(), needles)
    assert not local_paths_in(b'{"x": "runs/benchmarks/ce"}', needles)
    monkeypatch.setattr("ltzoo.portable._CHUNK", 64)  # the path straddles two chunks
    big = tmp_path / "graph.bin"
    big.write_bytes(b"\0" * 50 + str(tmp_path / "run").encode() + b"\0" * 100)
    assert str(tmp_path / "run") in local_paths_in(big, [str(tmp_path / "run")])


def test_a_push_that_would_publish_a_local_path_is_refused_before_anything_is_sent(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    config = read_config(run)
    config["ltzoo"]["recipe"]["notes"] = f"see {tmp_path}/notes.txt"  # free text ltzoo cannot rewrite
    atomic_write_json(run / "config.json", config)
    monkeypatch.setenv("HF_TOKEN", "hf_unused")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never contacted: the check comes first
    with pytest.raises(HubError, match=r"config.json would publish a path of this machine .*nothing was pushed"):
        push_run(run, "org/ce_resnet32.fmnist_lt")


def test_benchmark_results_name_paths_relative_to_the_repo(tmp_path):
    report = {
        "run_dir": str(ROOT / "runs" / "benchmarks" / "ce_seed0"),
        "runs": [str(tmp_path / "work" / "a" / "x"), str(tmp_path / "other" / "y")],
        "note": "a sentence, not a path",
        "n": 3,
    }
    assert repo_relative_paths(report, work_dir=tmp_path / "work") == {
        "run_dir": "runs/benchmarks/ce_seed0",
        "runs": ["$LTZOO_BENCH_WORK/a/x", "y"],
        "note": "a sentence, not a path",
        "n": 3,
    }


def test_committed_benchmark_results_hold_no_absolute_path():
    def strings(obj):
        if isinstance(obj, dict):
            for value in obj.values():
                yield from strings(value)
        elif isinstance(obj, list):
            for value in obj:
                yield from strings(value)
        elif isinstance(obj, str):
            yield obj

    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        for text in strings(json.loads(path.read_text())):
            assert not text.startswith("/") and not any(p in text for p in ("/work/", "/tmp/", "/home/", "/root/")), (
                f"{path.name}: {text!r}"
            )
