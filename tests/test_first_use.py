"""The first minute of a new user (issue 31): a command line that answers at once, bad arguments refused before
any compute, one output stream, a Ctrl-C that says how to resume, nothing of the machine published, and reports
that read right on any data. Each test runs the command line as a user does (a subprocess of ``python -m ltzoo``)."""

from __future__ import annotations

import json
import math
import os
import pty
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hub_fixtures import make_run

from ltzoo.errors import HubError
from ltzoo.publish.push import push_run
from ltzoo.runs import atomic_write_json, read_config

HEAVY = ("torch", "timm", "huggingface_hub", "onnx", "onnxruntime")
# Runs `ltzoo ARGS` in this interpreter and reports its exit code and the heavy modules it imported.
PROBE = (
    "import json, sys\n"
    "from ltzoo.cli import main\n"
    "code = main(sys.argv[1:])\n"
    f"print(json.dumps({{'code': code, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}), file=sys.stderr)\n"
)


def ltzoo(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ltzoo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def probe(*args: str) -> tuple[int, list[str], str]:
    """(exit code, heavy modules imported, what the command printed on stderr before the probe's line)."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    *printed, last = done.stderr.strip().splitlines()
    result = json.loads(last)
    return result["code"], result["heavy"], "\n".join(printed)


# ----- 4. answers at once: help, list and info import neither torch nor timm ----------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["list"],
        ["list", "dscl*"],
        ["info", "ce_resnet32.fmnist_lt"],
        ["train", "--help"],
        ["export", "--help"],
        ["eval", "--help"],
    ],
)
def test_help_list_and_info_import_no_heavy_library(args):
    if args[-1] == "--help":  # argparse exits after printing help
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from ltzoo.cli import main\ntry:\n main(sys.argv[1:])\n"
                "except SystemExit: pass\nprint(sorted(m for m in " + repr(HEAVY) + " if m in sys.modules))",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == "[]"
        return
    code, heavy, _ = probe(*args)
    assert code == 0 and heavy == []


def test_import_ltzoo_is_cheap_and_still_registers_its_models_with_timm():
    script = (
        "import sys, ltzoo\n"
        f"cheap = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "import timm\n"
        "print(cheap, timm.is_model('resnet32'), timm.is_model('ltzoo_resnet50'))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[] True True", done.stderr


def test_an_empty_list_says_so():
    done = ltzoo("list", "zzz*")
    assert done.returncode == 1 and done.stdout == ""
    assert "no zoo name matches 'zzz*'" in done.stderr and "ltzoo list" in done.stderr


def test_every_option_of_every_command_has_help():
    import argparse

    from ltzoo.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, parser in commands.items()
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert missing == []


# ----- 2 and 3. every argument is checked before any compute --------------------------------------------
def test_bad_arguments_fail_at_once_with_one_line_and_no_torch(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    unfinished = tmp_path / "half_run"
    unfinished.mkdir()
    cases = {
        "--out is a file": (["--out", str(a_file)], "is a file, not a folder"),
        "--out cannot be made": (["--out", "/proc/ltzoo/x"], "cannot be written"),
        "--data-root missing": (
            ["--out", str(tmp_path / "o1"), "--data-root", str(tmp_path / "nowhere")],
            "--data-root",
        ),
        "--init missing": (["--out", str(tmp_path / "o2"), "--init", str(tmp_path / "no_run")], "--init"),
        "--init not a run": (["--out", str(tmp_path / "o3"), "--init", str(unfinished)], "no config.json"),
        "--init unknown name": (["--out", str(tmp_path / "o4"), "--init", "ce_resnet3"], "Did you mean"),
        "--init bad hub id": (["--out", str(tmp_path / "o5"), "--init", "hf-hub:no-slash"], "not a Hub model id"),
    }
    for case, (args, expected) in cases.items():
        code, heavy, printed = probe("train", "ce_resnet32.fmnist_lt", *args)
        assert code == 2, case
        assert heavy == [], f"{case}: imported {heavy} before refusing"
        assert expected in printed and len(printed.splitlines()) == 1 and "Traceback" not in printed, (case, printed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "half_run"]  # nothing was created


def test_resume_of_a_finished_run_is_refused_before_any_compute(tmp_path):
    run = make_run(tmp_path / "run")
    for args, expected in ((["--resume"], "nothing to resume"), ([], "already holds a run")):
        code, heavy, printed = probe("train", "ce_resnet32.fmnist_lt", "--out", str(run), *args)
        assert code == 2 and heavy == [] and expected in printed


def test_a_data_root_without_the_dataset_is_an_error_not_a_fallback(tmp_path):
    from ltzoo.data.fmnist import locate_fashion_mnist
    from ltzoo.errors import DataNotFoundError

    with pytest.raises(DataNotFoundError, match="no Fashion-MNIST idx files there"):
        locate_fashion_mnist(tmp_path)  # an existing folder without the files: the system copy is not used
    done = ltzoo("eval", str(make_run(tmp_path / "run")), "--data-root", str(tmp_path / "nowhere"))
    assert done.returncode == 2 and "--data-root" in done.stderr and "Traceback" not in done.stderr


# ----- 5. what a user sees: one stream, Ctrl-C, rounded metrics, bars only in a terminal -------------------
@pytest.mark.slow
def test_training_writes_one_stream_and_ctrl_c_says_how_to_resume(tmp_path):
    out = tmp_path / "ce"
    command = [
        sys.executable,
        "-m",
        "ltzoo",
        "train",
        "ce_resnet32.fmnist_lt",
        "--out",
        str(out),
        "--epochs",
        "3",
        "--steps-per-epoch",
        "2",
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        # Ctrl-C as in a terminal, even when the tests themselves run in the background of a shell (which starts
        # them with SIGINT ignored, and Python then never raises KeyboardInterrupt)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines = []
    for line in process.stdout:  # the epoch lines arrive on stdout
        lines.append(line)
        if line.startswith("main 1/3"):
            process.send_signal(signal.SIGINT)
            break
    rest, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert "interrupted" in err and "--resume" in err and str(out) in err and "Traceback" not in err
    hinted = err.strip().splitlines()[-1].split()
    assert hinted[:2] == ["ltzoo", "train"] and hinted[-1] == "--resume"

    resumed = ltzoo(*hinted[1:])
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr == ""  # every line a user reads went to stdout
    assert "resuming ce_resnet32.fmnist_lt" in resumed.stdout and "main 3/3" in resumed.stdout
    assert "evaluating the selected model" in resumed.stdout and "| test |" in resumed.stdout

    def floats(obj):
        if isinstance(obj, float):
            yield obj
        elif isinstance(obj, dict):
            for value in obj.values():
                yield from floats(value)
        elif isinstance(obj, list):
            for value in obj:
                yield from floats(value)

    written = [json.loads((out / "metrics.json").read_text()), read_config(out)["ltzoo"]["metrics"]]
    written += [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all(value == float(f"{value:.12g}") for value in floats(written) if math.isfinite(value))
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in out.rglob("*") if path.is_file()}
    assert set(modes.values()) == {"0o644"}, modes


def _run_in_terminal(args: list[str]) -> str:
    """What ``ltzoo ARGS`` shows in a terminal: a pseudo-terminal that, like some CI runners' and
    ``docker exec -t``'s, reports a size of 0 x 0."""
    main, child = pty.openpty()
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [sys.executable, "-m", "ltzoo", *args],
        stdin=child,
        stdout=child,
        stderr=child,
        env={**env, "OMP_NUM_THREADS": "1"},
        close_fds=True,
    )
    os.close(child)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    process.wait(timeout=300)
    os.close(main)
    assert process.returncode == 0, shown.decode(errors="replace")
    return shown.decode(errors="replace")


@pytest.mark.slow
def test_the_evaluation_shows_a_bar_in_a_terminal_and_none_in_a_log(tmp_path):
    run = make_run(tmp_path / "run")
    in_terminal = _run_in_terminal(["eval", str(run), "--split", "val"])
    assert "eval val" in in_terminal and "it/s" in in_terminal
    logged = ltzoo("eval", str(run), "--split", "val")
    assert logged.returncode == 0 and "it/s" not in logged.stdout + logged.stderr and "| " in logged.stdout


# ----- 1. nothing local is published, by construction -----------------------------------------------------
def test_a_data_folder_recorded_as_files_is_published_by_name(tmp_path, monkeypatch):
    from ltzoo.publish.push import build_operations, read_run_for_push

    run = make_run(tmp_path / "run")
    config = read_config(run)
    # A default fmnist_lt run records the system copy, outside home, temp and the working folder.
    config["ltzoo"]["source"] = {"files": "/usr/share/datasets/fashion-mnist", "note": "fmnist_lt"}
    atomic_write_json(run / "config.json", config)
    operations, _ = build_operations(read_run_for_push(run), "org/ce", onnx_dir=None)
    pushed = json.loads(next(op for op in operations if op.path_in_repo == "config.json").path_or_fileobj)
    assert pushed["ltzoo"]["source"]["files"] == "fashion-mnist"
    assert read_config(run)["ltzoo"]["source"]["files"] == "/usr/share/datasets/fashion-mnist"  # the run keeps it


def test_any_absolute_path_of_the_machine_is_refused_naming_its_key(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    config = read_config(run)
    # A path outside home, temp and the working folder, in a key ltzoo does not know.
    config["ltzoo"]["recipe"]["stages"][0]["notes"] = f"weights copied from {sys.prefix}/share/x"
    atomic_write_json(run / "config.json", config)
    monkeypatch.setenv("HF_TOKEN", "hf_unused")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never contacted: the check comes first
    with pytest.raises(HubError) as refused:
        push_run(run, "org/ce_resnet32.fmnist_lt")
    message = str(refused.value)
    assert "key ltzoo.recipe.stages[0].notes" in message and sys.prefix in message
    assert "nothing was pushed" in message and "Remove the path" in message


def test_machine_paths_are_told_apart_from_urls_ratios_and_relative_paths():
    from ltzoo.portable import machine_paths_in_text

    text = (
        f"data in {sys.prefix}/lib, see http://127.0.0.1:8080/api/models and (resolve/main/onnx/model.onnx); "
        "many/medium/few, runs/ce, 1/2, /no_such_top_folder_here/x"
    )
    assert machine_paths_in_text(text) == [f"{sys.prefix}/lib"]


# ----- 8. a newcomer's first command: a short budget that says what the full recipe reaches -------------
def test_the_demo_trains_a_short_budget_and_offers_the_full_recipe():
    from ltzoo.cli.demo import DEMO_EPOCHS, full_recipe_reaches
    from ltzoo.registry import get_entry

    full = sum(stage.epochs for stage in get_entry("ce_resnet32.fmnist_lt").recipe().stages)
    assert DEMO_EPOCHS * 4 <= full
    help_text = ltzoo("demo", "--help").stdout
    assert "--full" in help_text and re.search(rf"{DEMO_EPOCHS}\s+epochs", help_text)
    reaches = full_recipe_reaches("ce_resnet32.fmnist_lt")
    recorded = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/accuracy.json").read_text())
    test = recorded["rows"]["ce_resnet32.fmnist_lt"]["test"]
    assert f"{sum(seed['all'] for seed in test) / len(test):.2f} %" in reaches
