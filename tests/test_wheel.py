"""The wheel works where a checkout is not: built from this tree, installed offline into a fresh virtual
environment, it runs its own local Hub stand-in (``ltzoo.testing.hub_server``, what ``ltzoo demo`` starts),
pushes a run to it with a rendered card and loads it back.

The fresh environment sees the project environment's packages through a ``.pth`` line (torch is never
reinstalled), but ``ltzoo`` itself comes only from the wheel: the subprocess runs outside the repo,
without ``PYTHONPATH``, and a ``.pth`` path line does not run the project environment's editable-install
hook. ``pip install --no-index -c constraints.txt`` then proves, offline, that the wheel's dependency
ranges accept the pinned packages.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hub_fixtures import ORG, USER, WRITE_TOKEN, isolated_process, make_run  # noqa: F401 (fixtures)
from huggingface_hub import hf_hub_download

from ltzoo.runs import load_run

ROOT = Path(__file__).resolve().parents[1]
# What pyproject.toml builds the wheel from (model_cards/ through the ltzoo/model_cards link).
SOURCES = ("pyproject.toml", "README.md", "ltzoo", "model_cards")
REPO = f"{ORG}/ce_resnet32.fmnist_lt"

# Runs in the fresh environment: load the pushed repo and save its logits on a fixed batch.
LOAD_SCRIPT = """
import json, sys
import numpy as np, torch
torch.set_num_threads(1)
import ltzoo
from ltzoo.publish.card import MODEL_CARDS_DIR
model = ltzoo.load("hf-hub:{repo}")
x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(7))
with torch.no_grad():
    np.save(sys.argv[1], model(x).numpy())
print(json.dumps({{"ltzoo": ltzoo.__file__, "cards": str(MODEL_CARDS_DIR), "torch": torch.__file__}}))
"""


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{command[:4]} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _build_wheel(tmp_path: Path) -> Path:
    """``pip wheel`` on a copy of the tree (setuptools writes build/ and *.egg-info into the source)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    dist = tmp_path / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            "-q",
            "-w",
            str(dist),
            str(src),
        ]
    )
    (wheel,) = dist.glob("ltzoo-*.whl")
    return wheel


def _fresh_venv(tmp_path: Path) -> tuple[Path, Path]:
    """A venv without pip whose site-packages sees the project environment's (one ``.pth`` path line)."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    (site / "project_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python, site


@contextlib.contextmanager
def _wheel_hub(python: Path, work: Path, env: dict[str, str], data: Path) -> Iterator[str]:
    """The wheel's own Hub stand-in, started as its docstring says (``python -m ltzoo.testing.hub_server``)."""
    server = subprocess.Popen(
        [
            str(python),
            "-m",
            "ltzoo.testing.hub_server",
            "--port",
            "0",
            "--token",
            WRITE_TOKEN,
            "--user",
            USER,
            "--orgs",
            ORG,
            "--data",
            str(data),
        ],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:"), f"the wheel's hub server did not start: {url!r}"
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.slow
def test_wheel_installed_offline_pushes_a_card_and_loads_back(tmp_path):
    wheel = _build_wheel(tmp_path)
    python, site = _fresh_venv(tmp_path)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-index",
            "-c",
            str(ROOT / "constraints.txt"),
            str(wheel),
        ]
    )
    for data in ("model_cards/template.md", "model_cards/methods/ce.md", "zoo_pins.json"):  # package data
        assert (site / "ltzoo" / data).is_file(), data
    assert (site / "ltzoo" / "testing" / "hub_server.py").is_file()  # `ltzoo demo` needs no tests/ folder

    run_dir = make_run(tmp_path / "runs" / "ce", seed=0)
    work = tmp_path / "elsewhere"  # not the repo: nothing may import ltzoo from the current directory
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "HF_", "LTZOO_"))}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1")
    with _wheel_hub(python, work, env, tmp_path / "hub-data") as hub_url:
        env.update(HF_ENDPOINT=hub_url, HF_TOKEN=WRITE_TOKEN)
        # The console script from the wheel pushes (the card is rendered from the wheel's model_cards).
        pushed = _run(
            [str(python.parent / "ltzoo"), "push", "--model", str(run_dir), "--repo-id", REPO], cwd=work, env=env
        )
        assert f"pushed {run_dir} -> {REPO}" in pushed.stdout

        logits_file = tmp_path / "logits.npy"
        loaded = _run([str(python), "-c", LOAD_SCRIPT.format(repo=REPO), str(logits_file)], cwd=work, env=env)
        where = json.loads(loaded.stdout.strip().splitlines()[-1])
        assert Path(where["ltzoo"]).is_relative_to(site) and Path(where["cards"]).is_relative_to(site)
        assert not Path(where["torch"]).is_relative_to(site)  # torch was not reinstalled

        model, _ = load_run(run_dir)
        x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            expected = model(x).numpy()
        np.testing.assert_array_equal(np.load(logits_file), expected)

        readme = Path(hf_hub_download(REPO, "README.md", endpoint=hub_url, cache_dir=tmp_path / "dl")).read_text()
        front = yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", readme, re.S).group(1))
        assert front["library_name"] == "ltzoo" and front["model-index"][0]["results"]
        assert "## Method" in readme and "Cross-entropy baseline (ERM)" in readme  # model_cards/methods/ce.md
