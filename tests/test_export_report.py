"""The typed export report: what ``export`` returns is what ``export_report.json`` holds, failures are records,
and reports written before the records existed (version 1: failures as sentences) still load."""

from __future__ import annotations

import json

import pytest
from hub_fixtures import isolated_process, make_run  # noqa: F401 (fixture)

from ltzoo.errors import CorruptFileError
from ltzoo.export import ExportOptions, export
from ltzoo.export.report import ExportReport, Failure, read_report, write_report

# The layout version 1 wrote (ltzoo.export.pipeline before the typed report), cut to the keys that carry
# meaning: a failed int8 gate on test, a parity failure, a variant that could not be made, a runtime error.
VERSION_1 = {
    "report_version": 1,
    "created": "2025-01-01T00:00:00+00:00",
    "source": {"name": "ce_resnet32.fmnist_lt", "weights_sha256": "ab" * 32, "spec": "local-dir:ce"},
    "export": {"exporter": "dynamo", "opset": 18},
    "variants": {
        "fp32": {
            "file": "model.onnx",
            "sha256": "cd" * 32,
            "metadata": {"source_weights_sha256": "ab" * 32},
            "checks": {
                "graph": {"passed": True, "nodes": 70},
                "parity": {
                    "passed": False,
                    "reason": "parity with PyTorch failed: max abs diff 0.2",
                    "max_abs_diff": 0.2,
                },
            },
        },
        "fp16": {"file": "model_fp16.onnx", "checks": {}, "error": "fp16 conversion failed"},
        "int8": {
            "file": "model_int8.onnx",
            "checks": {"graph": {"passed": True}},
            "recipe": {"calibration_method": "minmax"},
        },
    },
    "verification": {
        "mode": "dataset",
        "splits": ["val", "test"],
        "max_drop": {"fp32": 0.1, "int8": 1.0},
        "gated_groups": ["all", "few"],
        "results": {
            "test": {
                "pytorch": {
                    "all": 71.0,
                    "many": 80.0,
                    "medium": 60.0,
                    "few": 41.0,
                    "per_class": [90.0, 10.0],
                    "num_samples": 10000,
                },
                "int8": {"all": 70.0, "few": 39.5},
            }
        },
        "deltas": {"test": {"int8": {"all": -1.0, "few": -1.5}}},
        "failures": ["int8 on test: few top-1 39.50 vs PyTorch 41.00 (drop 1.50 pt > allowed 1 pt)"],
    },
    "passed": False,
    "failures": [
        "fp32: parity: parity with PyTorch failed: max abs diff 0.2",
        "fp16: could not be made: fp16 conversion failed",
        "int8: onnxruntime: ONNX Runtime cannot load model_int8.onnx",
        "int8 on test: few top-1 39.50 vs PyTorch 41.00 (drop 1.50 pt > allowed 1 pt)",
    ],
}


def test_a_version_1_report_loads_with_its_sentences_as_records(tmp_path):
    (tmp_path / "export_report.json").write_text(json.dumps(VERSION_1))
    report = read_report(tmp_path)
    assert report.failures == [
        Failure("fp32", "parity", reason="parity with PyTorch failed: max abs diff 0.2"),
        Failure("fp16", "make", reason="fp16 conversion failed"),
        Failure("int8", "onnxruntime", reason="ONNX Runtime cannot load model_int8.onnx"),
        Failure("int8", "top1_few", split="test", value=1.5, limit=1.0, reason="few top-1 39.50 vs PyTorch 41.00"),
    ]
    assert [str(f) for f in report.failures if f.is_gate] == [VERSION_1["failures"][-1]]  # the same sentence back
    assert not report.passed and report.gate_failures == report.failures[-1:]
    fp32 = report.variants["fp32"]
    assert not fp32.passed and fp32.checks["parity"].details == {"max_abs_diff": 0.2}
    assert fp32.checks["graph"].passed and fp32.checks["graph"].details == {"nodes": 70}
    assert report.variants["fp16"].error == "fp16 conversion failed" and not report.variants["fp16"].passed
    assert report.variants["int8"].recipe == {"calibration_method": "minmax"}
    test = report.verification.results["test"]
    assert test["pytorch"].few == 41.0 and test["pytorch"].per_class == [90.0, 10.0]
    assert test["int8"].all == 70.0 and test["int8"].many is None
    assert report.source_weights_sha256 == "ab" * 32
    # Written again, it is a version 2 report that reads back to the same records.
    write_report(tmp_path, report)
    again = json.loads((tmp_path / "export_report.json").read_text())
    assert again["report_version"] == 2 and again["failures"][0] == {
        "variant": "fp32",
        "check": "parity",
        "split": None,
        "value": None,
        "limit": None,
        "reason": "parity with PyTorch failed: max abs diff 0.2",
    }
    assert read_report(tmp_path).failures == report.failures


def test_what_export_returns_is_what_it_wrote(tmp_path):
    run = make_run(tmp_path / "run")
    out = tmp_path / "exports"
    report = export(str(run), out, ExportOptions(verify="parity", exporter="torchscript", lint=False))
    written = json.loads((out / "export_report.json").read_text())
    assert written == json.loads(json.dumps(report.to_dict()))
    assert written["report_version"] == 2 and written["passed"] is True and written["failures"] == []
    loaded = read_report(out)
    assert loaded.to_dict() == written
    assert loaded.variants["fp32"].checks["parity"].passed
    assert loaded.source_weights_sha256 == report.source["weights_sha256"]  # the run's model.safetensors


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no export_report.json in"),
        ("{", "is not valid JSON"),
        ("[1, 2]", "not an ltzoo export report"),
        ('{"variants": {"fp32": {"checks": {"graph": 3}}}}', "not a readable ltzoo export report"),
    ],
)
def test_an_unreadable_report_is_refused_with_the_fix(tmp_path, content, message):
    if content is not None:
        (tmp_path / "export_report.json").write_text(content)
    with pytest.raises(CorruptFileError, match=message) as caught:
        read_report(tmp_path)
    assert "re-run the export" in str(caught.value) or "run export/to_onnx.py first" in str(caught.value)


def test_a_default_report_has_passed_and_says_how_it_was_verified():
    report = ExportReport()
    assert report.passed and report.verification.mode == "none" and report.created
    assert ExportReport.from_dict(report.to_dict()).to_dict() == report.to_dict()
