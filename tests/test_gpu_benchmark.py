"""The GPU check (``python -m benchmarks.gpu``) in its ``--dry-run``: the same code on the CPU at tiny sizes.

A GPU machine is lent rarely and briefly, and the check runs there once: this test is what makes sure that
one run does not die on a typo, a missing package or a changed API. It hides the packages a bare GPU image
may lack (optuna, onnxconverter_common, polygraphy, onnxscript, matplotlib) the way Python does for a
missing module, so every section must still run without them (the export falls back to the torchscript
exporter when onnxscript is absent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MISSING_ON_A_GPU_IMAGE = ("optuna", "onnxconverter_common", "polygraphy", "onnxscript", "matplotlib")
SECTIONS = ("environment", "steps", "fmnist_ce", "input_pipeline", "export_gate", "cuda_tests")

# `sys.modules[name] = None` is how Python marks a module as absent: `import name` raises
# ModuleNotFoundError and importlib.util.find_spec(name) returns None, as on a machine without it.
RUN_WITHOUT_PACKAGES = """
import sys
for name in {names!r}:
    sys.modules[name] = None
from benchmarks.gpu import main
main(["--dry-run", "--results-dir", {results!r}])
"""


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> dict:
    results = tmp_path_factory.mktemp("gpu_dry_run")
    code = RUN_WITHOUT_PACKAGES.format(names=MISSING_ON_A_GPU_IMAGE, results=str(results))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (results / "gpu_quick.md").is_file()
    report = json.loads((results / "gpu_quick.json").read_text())
    report["markdown"] = (results / "gpu_quick.md").read_text()
    return report


def test_every_section_runs_without_the_packages_a_gpu_image_may_lack(dry_run):
    sections = dry_run["sections"]
    assert list(sections) == list(SECTIONS)
    errors = {name: section["error"][-1500:] for name, section in sections.items() if "error" in section}
    assert not errors


def test_only_modules_that_need_a_hidden_package_fail_to_import(dry_run):
    env = dry_run["sections"]["environment"]["result"]
    assert env["ltzoo_modules"] > 100  # the walk found the package, not an empty folder
    for module, error in env["ltzoo_modules_failed"].items():
        assert any(name in error for name in MISSING_ON_A_GPU_IMAGE), (module, error)


def test_the_report_is_marked_as_a_dry_run_and_records_what_ran(dry_run):
    assert dry_run["dry_run"] is True
    assert "dry run" in dry_run["markdown"]
    steps = dry_run["sections"]["steps"]["result"]
    settings = {(row["name"], row["setting"]) for row in steps["rows"]}
    assert ("ce_resnet50.imagenet_lt", "fp32_no_tf32") in settings
    assert ("dscl_pbsd_resnet50.imagenet_lt", "bf16_channels_last") in settings
    assert all(row["images_per_s"] > 0 for row in steps["rows"])
    gate = dry_run["sections"]["export_gate"]["result"]
    assert gate["exporter"] == "torchscript"  # onnxscript is hidden
    (reference,) = gate["gate"].values()
    assert reference["passed"] and reference["parity_passed"]
    assert reference["agreement"]["top1_agreement"] > 0.99


def test_the_cuda_tests_ran_and_skipped_cleanly_without_a_gpu(dry_run):
    tests = dry_run["sections"]["cuda_tests"]["result"]
    assert tests["returncode"] == 0 and not tests["timed_out"]
    assert tests["counts"].get("skipped", 0) >= 4 and not tests["counts"].get("failed")


def test_the_bundle_carries_the_data_and_only_pure_python_packages(tmp_path):
    from benchmarks.gpu import BUNDLE_DISTRIBUTIONS, BUNDLE_LIMIT_MIB, make_bundle, use_bundle

    summary = make_bundle(tmp_path / "bundle")
    assert set(summary["packages"]) == set(BUNDLE_DISTRIBUTIONS)
    assert summary["mib"] < BUNDLE_LIMIT_MIB - 8  # room for the checkout beside it
    site = tmp_path / "bundle" / "site"
    assert (site / "pytest").is_dir() and (site / "onnxscript" / "__init__.py").is_file()
    assert not [f for f in site.rglob("*") if f.suffix in (".so", ".pyd", ".pyc")]
    stems = sorted(p.name.split("-ubyte")[0] for p in (tmp_path / "bundle" / "data").iterdir())
    assert stems == ["t10k-images-idx3", "t10k-labels-idx1", "train-images-idx3", "train-labels-idx1"]
    with pytest.raises(SystemExit, match="not a bundle"):
        use_bundle(tmp_path)
    with pytest.raises(SystemExit, match="exists and is not a bundle"):
        make_bundle(tmp_path)  # a folder it did not make is never deleted
    assert (tmp_path / "bundle" / "bundle.json").is_file()
    make_bundle(tmp_path / "bundle")  # its own bundle is replaced


def test_a_steps_section_out_of_budget_skips_what_is_left_and_still_renders():
    from benchmarks.gpu import DRY_SIZES, Clock, _render_steps, steps_section

    steps = steps_section(DRY_SIZES, Clock(budget_s=0))  # spent before it starts: nothing is measured
    assert steps["rows"] == [] and len(steps["skipped"]) == 5
    assert set(steps["ratios"].values()) == {None}
    text = "\n".join(_render_steps(steps))
    assert text.count("not measured (skipped: the budget ran out)") == 2
    assert "ce_resnet50.imagenet_lt bf16_channels_last" in text
