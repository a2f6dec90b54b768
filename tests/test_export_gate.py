"""The per-split gate on a trained fmnist_lt model (the shared short CE run from conftest).

The int8 graph must keep the tail within the gate on val and test; a graph whose head is broken after
export must fail it with a non-zero exit; the logit-adjustment effect in the report must match a
computation done here by hand.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

import ltzoo
from ltzoo.data import TransformedDataset, eval_transform
from ltzoo.errors import ExportCheckError
from ltzoo.export import ExportOptions, export, recheck

pytestmark = pytest.mark.slow  # trains (shared conftest run) and evaluates exported graphs on val/test

FMNIST_COUNTS = [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
GROUPS = {"many": [0, 1, 2, 3, 4], "medium": [5, 6, 7], "few": [8, 9]}


def test_int8_of_trained_model_passes_the_per_split_gate(ce_fmnist_int8_export, ce_fmnist_run):
    out, code = ce_fmnist_int8_export  # conftest.py: to_onnx.py --int8 --verify dataset
    report = json.loads((out / "export_report.json").read_text())
    assert code == 0 and report["passed"], report["failures"]
    verification = report["verification"]
    assert verification["splits"] == ["val", "test"] and verification["max_drop"]["int8"] == 1.0
    trained = json.loads((ce_fmnist_run / "metrics.json").read_text())
    for split in ("val", "test"):
        results = verification["results"][split]
        # The same evaluator scored the run at training time: PyTorch here must match it exactly.
        for group in ("all", "many", "medium", "few"):
            assert results["pytorch"][group] == pytest.approx(trained[split][group], abs=1e-9)
        assert results["fp32"]["per_class"] == results["pytorch"]["per_class"]
        for group in ("all", "few"):  # the gate, recomputed from the stored numbers
            assert results["pytorch"][group] - results["int8"][group] <= 1.0 + 1e-9
        assert results["int8"]["num_samples"] == (1000 if split == "val" else 10000)
    calibration = report["variants"]["int8"]["recipe"]["calibration"]
    # Water-filling of 512 over the fmnist_lt counts, by hand: quota 68 (10+16+27+46 + 6*68 = 507),
    # the 5 leftovers go to classes with more than 68 images.
    assert calibration["per_class"][6:] == [46, 27, 16, 10]
    assert sorted(calibration["per_class"][:6]) == [68] + [69] * 5 and calibration["classes_missing"] == []
    # --calib-method auto (the default) chose on val: the chosen method's val drop is the one the gate saw
    choice = report["variants"]["int8"]["recipe"]["calibration_choice"]
    assert choice["split"] == "val" and choice["within_threshold"] is True
    chosen_drop = choice["val_drop_points"][choice["chosen"]]
    assert list(choice["val_drop_points"])[-1] == choice["chosen"]  # it stopped at the first method that passed
    for group in ("all", "few"):
        val = verification["results"]["val"]
        assert chosen_drop[group] == pytest.approx(val["pytorch"][group] - val["int8"][group], abs=1e-9)


def test_breaking_the_int8_head_after_export_fails_the_gate(ce_fmnist_int8_export, ce_fmnist_run, tmp_path):
    out, _ = ce_fmnist_int8_export
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(out / "model.onnx", broken / "model.onnx")
    proto = onnx.load(str(out / "model_int8.onnx"))
    gemm = next(node for node in proto.graph.node if node.op_type == "Gemm")
    for init in proto.graph.initializer:
        if init.name in gemm.input[1:]:  # negate the classifier: every decision becomes the least likely class
            init.CopyFrom(onnx.numpy_helper.from_array(-onnx.numpy_helper.to_array(init), init.name))
    onnx.save(proto, str(broken / "model_int8.onnx"))
    with pytest.raises(ExportCheckError) as caught:
        recheck(str(ce_fmnist_run), broken, ExportOptions(verify="dataset", splits=("val",)))
    report = json.loads((broken / "export_report.json").read_text())
    assert not report["passed"]
    # A structured record: the int8 graph's overall top-1 on val dropped by more than the 1-point limit.
    lost = [f for f in report["failures"] if (f["variant"], f["check"], f["split"]) == ("int8", "top1_all", "val")]
    assert lost and lost[0]["value"] > lost[0]["limit"] == 1.0, report["failures"]
    assert "int8 on val" in str(caught.value)
    assert "re-export with --int8 (--calib-method auto" in str(caught.value)  # the error names the fix to try
    assert report["variants"]["fp32"]["checks"]["parity"]["passed"]  # the untouched fp32 graph still passes


def test_logit_adjustment_effect_matches_a_hand_computation(ce_fmnist_run, fmnist, tmp_path):
    tau = 1.0
    report = export(str(ce_fmnist_run), tmp_path, ExportOptions(logit_adjust=tau, verify="dataset", splits=("val",)))
    effect = report.logit_adjust["effect_points_adjusted_minus_plain"]["val"]

    model = ltzoo.load(str(ce_fmnist_run))
    loader = torch.utils.data.DataLoader(TransformedDataset(fmnist.val, eval_transform(fmnist.info)), batch_size=500)
    logits, targets = [], []
    with torch.inference_mode():
        for images, labels in loader:
            logits.append(model(images).numpy())
            targets.append(labels.numpy())
    logits, targets = np.concatenate(logits), np.concatenate(targets)
    prior = np.array(FMNIST_COUNTS, dtype=np.float64) / sum(FMNIST_COUNTS)

    def group_accuracy(predictions: np.ndarray) -> dict[str, float]:
        per_class = [100.0 * np.mean(predictions[targets == c] == c) for c in range(10)]
        out = {group: float(np.mean([per_class[c] for c in classes])) for group, classes in GROUPS.items()}
        out["all"] = 100.0 * float(np.mean(predictions == targets))
        return out

    plain = group_accuracy(logits.argmax(1))
    adjusted = group_accuracy((logits - tau * np.log(prior)).argmax(1))
    for group in ("all", "many", "medium", "few"):
        assert effect[group] == pytest.approx(adjusted[group] - plain[group], abs=1e-6)
    gated = report.verification.results["val"]
    assert gated["pytorch"].all == pytest.approx(adjusted["all"], abs=1e-6)  # the reference is the adjusted model
    assert gated["fp32"].all == pytest.approx(adjusted["all"], abs=0.11)
