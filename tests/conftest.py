"""Shared fixtures. Data is the real Fashion-MNIST from Debian's dataset-fashion-mnist (`make setup`)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Keep every cache (Hub, ltzoo) inside the test session so nothing leaks to or from the user's home.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def pytest_configure(config):
    """Tests read and write an empty pins file of their own, never the ltzoo/zoo_pins.json of the checkout
    (`ltzoo publish-zoo` without --pins writes the pins file the registry reads: $LTZOO_PINS).

    Under pytest-xdist (`make test` runs two workers, one per core) every worker and every process a test starts
    uses one intra-op thread: two threads per process on cores that another worker already keeps busy make
    small convolutions far slower. Set before torch is imported, so it holds for the workers' torch too."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
    folder = Path(tempfile.mkdtemp(prefix="ltzoo-test-pins-"))
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    pins = folder / "zoo_pins.json"
    pins.write_text(json.dumps({"format": 1, "pins": {}}))
    os.environ["LTZOO_PINS"] = str(pins)


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for a whole module (``pytestmark = pytest.mark.usefixtures("single_thread")``): on the
    shared 2-core machine, two threads per process oversubscribe the cores and small convolutions get an order
    of magnitude slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fmnist():
    """The real fmnist_lt dataset (built once per session)."""
    from ltzoo.data import build_dataset

    return build_dataset("fmnist_lt")


# A short but real CE run on fmnist_lt, shared by every test that needs a trained model
# (save/load, eval, export gates, Hub push). Budget: a few epochs of ResNet-32 at 28 px.
SHORT_CE_EPOCHS = 4


@pytest.fixture(scope="session")
def ce_fmnist_run(tmp_path_factory) -> Path:
    from ltzoo.engine.trainer import train
    from ltzoo.registry import get_entry

    out = tmp_path_factory.mktemp("runs") / "ce_resnet32_fmnist_lt"
    entry = get_entry("ce_resnet32.fmnist_lt")
    train(entry.recipe(), out, name=entry.name, epochs=SHORT_CE_EPOCHS)
    return out


@pytest.fixture(scope="session")
def ce_fmnist_int8_export(ce_fmnist_run, tmp_path_factory) -> tuple[Path, int]:
    """The shared CE run exported as a user would: ``to_onnx.py --int8 --verify dataset`` (fp32 + int8 with auto
    calibration, gated on val and test). Returns the export folder and the command's exit code."""
    from ltzoo.cli.export import main_export

    out = tmp_path_factory.mktemp("exports") / "ce_int8"
    code = main_export(["--model", str(ce_fmnist_run), "--out", str(out), "--int8", "--verify", "dataset"])
    return out, code
