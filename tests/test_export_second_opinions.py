"""Second opinions on the exported graphs: Polygraphy's linter (optional, independent of ltzoo's checks) and
``--int8-debug`` (ONNX Runtime's qdq_loss_debug, tensor by tensor between fp32 and int8)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from hub_fixtures import isolated_process, make_run  # noqa: F401 (fixture)
from onnx import TensorProto, helper

from ltzoo.errors import ExportCheckError
from ltzoo.export.lint import INSTALL_HINT, check_lint, lint_unavailable
from ltzoo.export.pipeline import ExportOptions, export

LINT_MISSING = lint_unavailable()
needs_lint = pytest.mark.skipif(LINT_MISSING is not None, reason=f"polygraphy lint {LINT_MISSING}")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run", seed=0)


@pytest.mark.skipif(LINT_MISSING is None, reason="polygraphy is installed here: the lint runs (see below)")
def test_without_polygraphy_the_report_says_the_lint_did_not_run_and_how_to_get_it(run_dir, tmp_path):
    report = export(str(run_dir), tmp_path / "out", ExportOptions(verify="none", exporter="torchscript"))
    assert report.independent_checks["polygraphy_lint"].startswith("not installed")
    assert INSTALL_HINT in report.independent_checks["polygraphy_lint"]
    assert "polygraphy_lint" not in report.variants["fp32"].checks  # a check that did not run is not "passed"


@needs_lint
def test_polygraphy_lints_every_variant(run_dir, tmp_path):
    from ltzoo.data import build_dataset

    report = export(
        str(run_dir),
        tmp_path / "out",
        ExportOptions(
            verify="none", exporter="torchscript", fp16=True, int8=True, calib_size=32, calib_method="minmax"
        ),
        data=build_dataset("fmnist_lt"),
    )
    assert report.independent_checks["polygraphy_lint"].startswith("ran on every variant")
    for variant in ("fp32", "fp16", "int8"):
        lint = report.variants[variant].checks["polygraphy_lint"]
        assert lint.passed and lint.details["nodes_failing"] == [] and lint.details["nodes_passing"] > 30, variant
    skipped = export(str(run_dir), tmp_path / "out2", ExportOptions(verify="none", exporter="torchscript", lint=False))
    assert skipped.independent_checks["polygraphy_lint"] == "skipped: --no-lint"


@needs_lint
def test_polygraphy_finds_what_the_onnx_checker_lets_through(tmp_path):
    # A Reshape of [batch, 4] to [-1, 3]: valid ONNX (the checker and shape inference accept a symbolic batch),
    # but it cannot run at batch 1, which is what the linter feeds it.
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["logits"], name="bad_reshape")],
        "bad",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 3])],
    )
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    onnx.checker.check_model(str(path), full_check=True)  # ltzoo's own graph check would pass it
    with pytest.raises(ExportCheckError, match="polygraphy check lint found 1 error.*bad_reshape") as caught:
        check_lint(path)
    assert caught.value.details["nodes_failing"] == ["bad_reshape"]


@pytest.mark.slow
def test_int8_debug_ranks_tensors_names_exclusion_candidates_and_exclusion_works(run_dir, tmp_path):
    from ltzoo.data import build_dataset

    data = build_dataset("fmnist_lt")
    out = tmp_path / "out"
    # A gate nothing can pass (int8 must beat PyTorch by 5 points), so the failure message is shown.
    options = ExportOptions(
        verify="dataset",
        splits=("val",),
        exporter="torchscript",
        int8=True,
        calib_size=64,
        calib_method="minmax",
        int8_debug=4,
        max_drop={"fp32": 0.1, "int8": -5.0},
        lint=False,
    )
    with pytest.raises(ExportCheckError) as caught:
        export(str(run_dir), out, options, data=data)
    report = json.loads((out / "export_report.json").read_text())
    debug = report["variants"]["int8"]["int8_debug"]
    assert debug["tool"] == "onnxruntime.quantization.qdq_loss_debug" and debug["images"] == 32
    assert debug["activations_compared"] > 50 and debug["weights_compared"] == 31  # ResNet-32: 31 convolutions
    worst = debug["worst_activations"]
    assert len(worst) == 4 and [r["sqnr_db"] for r in worst] == sorted(r["sqnr_db"] for r in worst)
    assert all(np.isfinite(r["sqnr_db"]) and r["sqnr_vs_fp32_db"] is not None for r in worst)
    nodes = {node.name for node in onnx.load(str(out / "model_int8.onnx")).graph.node}
    assert debug["exclude_candidates"] and set(debug["exclude_candidates"]) <= nodes
    message = str(caught.value)
    assert "int8 rounds these tensors worst" in message and worst[0]["tensor"] in message
    assert f"--int8-exclude {debug['exclude_candidates'][0]}" in message

    # Acting on it: with the nodes next to the worst inner tensor kept float, that tensor is no longer rounded.
    target = next(row for row in worst if row["producer"])
    chosen = [target["producer"], *target["consumers"]]
    assert set(chosen) <= set(debug["exclude_candidates"])
    excluded = export(
        str(run_dir),
        tmp_path / "excluded",
        ExportOptions(
            verify="parity",
            exporter="torchscript",
            int8=True,
            calib_size=64,
            calib_method="minmax",
            int8_exclude=tuple(chosen),
            lint=False,
        ),
        data=data,
    )
    assert excluded.variants["int8"].recipe["nodes_excluded_by_request"] == chosen

    def quantized(path: Path) -> set[str]:
        return {node.input[0] for node in onnx.load(str(path)).graph.node if node.op_type == "QuantizeLinear"}

    assert target["tensor"] in quantized(out / "model_int8.onnx")
    assert target["tensor"] not in quantized(tmp_path / "excluded" / "model_int8.onnx")

    with pytest.raises(ExportCheckError, match="--int8-exclude names no node .*'no_such_node'"):
        export(
            str(run_dir),
            tmp_path / "bad",
            ExportOptions(
                verify="none",
                exporter="torchscript",
                int8=True,
                calib_size=16,
                calib_method="minmax",
                int8_exclude=("no_such_node",),
                lint=False,
            ),
            data=data,
        )
