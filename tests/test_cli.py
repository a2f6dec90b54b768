"""The command line as a user runs it (subprocesses of `python -m ltzoo`)."""

import json
import subprocess
import sys


def ltzoo(*args):
    return subprocess.run([sys.executable, "-m", "ltzoo", *args], capture_output=True, text=True)


def test_help_lists_commands():
    out = ltzoo("--help")
    assert out.returncode == 0
    for command in ("list", "info", "train", "eval", "demo"):
        assert command in out.stdout
    assert "--resume" in ltzoo("train", "--help").stdout


def test_list_and_info():
    out = ltzoo("list", "ce_resnet32*")
    assert out.returncode == 0 and "ce_resnet32.fmnist_lt" in out.stdout and "ce_resnet50" not in out.stdout
    info = json.loads(ltzoo("info", "ce_resnet32.fmnist_lt", "--json").stdout)
    assert info["dataset"] == "fmnist_lt" and info["recipe"]["stages"][0]["batch_size"] == 64


def test_unknown_name_is_a_clean_error():
    out = ltzoo("info", "dscl_pbsd_resnet5")
    assert out.returncode == 2 and "Traceback" not in out.stderr and "unknown model" in out.stderr


def test_eval_json_matches_recorded_metrics(ce_fmnist_run):
    out = ltzoo("eval", str(ce_fmnist_run), "--split", "test", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    recorded = json.loads((ce_fmnist_run / "metrics.json").read_text())["test"]
    assert result["all"] == recorded["all"] and result["few"] == recorded["few"]
    assert result["shot_thresholds"] == {"many": 100, "few": 20, "rule": "absolute"}
