"""The model card and the push-side checks, without a server: what goes on the card, and what is refused."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hub_fixtures import isolated_process, make_run  # noqa: F401 (fixture)
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from ltzoo.errors import CorruptFileError, DataNotFoundError, ExportCheckError
from ltzoo.export.pipeline import ExportOptions, export, recheck
from ltzoo.export.report import read_report
from ltzoo.publish.card import RESULTS_SOURCE, method_text, read_metrics, render_card
from ltzoo.publish.push import push_run, read_run_for_push
from ltzoo.runs import read_config

REPO = "org/ce_resnet32.fmnist_lt"
ROOT = Path(__file__).resolve().parents[1]


def _meta(card_text: str) -> dict:
    return yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", card_text, re.S).group(1))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run", seed=0)


def _export_row(card_text: str, variant: str) -> str:
    (row,) = [line for line in card_text.splitlines() if line.startswith(f"| {variant} ")]
    return row


@pytest.mark.slow  # the shared CE run, exported with --int8 --verify dataset (conftest.py)
def test_export_table_shows_reference_variants_gate_and_calibration(ce_fmnist_run, ce_fmnist_int8_export):
    out, _ = ce_fmnist_int8_export
    report = read_report(out)
    card = render_card(
        read_config(ce_fmnist_run),
        read_metrics(ce_fmnist_run),
        REPO,
        export_report=report,
        onnx_files=["onnx/model.onnx", "onnx/model_int8.onnx", "onnx/export_report.json"],
    )
    text = str(card)
    assert (
        "| variant | file | max abs diff vs PyTorch | top-1 agreement | val top-1 all / few "
        "| test top-1 all / few | passed |" in text
    )
    results = report.verification.results

    def top1(name: str) -> str:
        return " | ".join(
            f"{results[split][name].all:.2f} / {results[split][name].few:.2f}" for split in ("val", "test")
        )

    assert (
        _export_row(text, "pytorch") == f"| pytorch (reference) | `model.safetensors` | - | - | {top1('pytorch')} | - |"
    )
    for variant, file in (("fp32", "model.onnx"), ("int8", "model_int8.onnx")):
        parity = report.variants[variant].checks["parity"].details
        assert _export_row(text, variant) == (
            f"| {variant} | `{file}` | {parity['max_abs_diff']:.2e} | {100 * parity['top1_agreement']:.2f} % | "
            f"{top1(variant)} | yes |"
        )
    assert "may drop at most (fp32 0.1, fp16 0.5, int8 1) points below PyTorch" in text  # the default gate
    choice = report.variants["int8"].recipe["calibration_choice"]
    assert "calibrated on 512 train images (seed 0), class-balanced" in text  # --calib-size / --calib-seed defaults
    assert f"{choice['chosen']} calibration, chosen on val by `--calib-method auto` ({choice['rule']})." in text
    assert 'variant="fp32")  # fp32, int8' in text
    assert "- `onnx/model_int8.onnx`" in text


@pytest.mark.slow
def test_a_variant_that_failed_the_gate_is_marked_on_the_card(ce_fmnist_run, ce_fmnist_int8_export, tmp_path):
    """Its own checks pass; only the gate failed it (here: int8 would have to beat PyTorch by 5 points on val)."""
    out, _ = ce_fmnist_int8_export
    copy = shutil.copytree(out, tmp_path / "exports")
    impossible = ExportOptions(verify="dataset", splits=("val",), max_drop={"fp32": 0.1, "int8": -5.0}, lint=False)
    with pytest.raises(ExportCheckError, match="int8 on val"):
        recheck(str(ce_fmnist_run), copy, impossible)
    report = read_report(copy)
    assert [(f.variant, f.split) for f in report.failures] == [("int8", "val"), ("int8", "val")]  # all and few
    assert report.variants["int8"].passed  # every check of the graph itself passed
    text = str(
        render_card(
            read_config(ce_fmnist_run),
            read_metrics(ce_fmnist_run),
            REPO,
            export_report=report,
            onnx_files=["onnx/model.onnx", "onnx/model_int8.onnx"],
        )
    )
    assert _export_row(text, "int8").endswith("| **no** |") and _export_row(text, "fp32").endswith("| yes |")
    assert "val top-1 all / few | passed |" in text and "test top-1" not in text  # only val was verified


def test_a_group_without_classes_is_left_out_of_the_model_index(run_dir):
    metrics = read_metrics(run_dir)
    metrics["val"]["medium"] = None  # e.g. a dataset whose counts put no class in the medium group
    text = str(render_card(read_config(run_dir), metrics, REPO))
    configs = [
        (r["dataset"]["split"], m["config"]) for r in _meta(text)["model-index"][0]["results"] for m in r["metrics"]
    ]
    assert ("val", "medium") not in configs and ("test", "medium") in configs and len(configs) == 7
    assert "| val | 61.25 | 75.00 | - | 26.25 |" in text


def test_each_method_gets_its_own_paragraph_and_tag(tmp_path):
    for method in ("ldam_drw", "dscl_pbsd", "wb_onestage"):
        run = make_run(tmp_path / method, method=method)
        text = str(render_card(read_config(run), read_metrics(run), f"org/{method}_resnet32.fmnist_lt"))
        assert method_text(method).paragraph in text
        assert method in _meta(text)["tags"]
        assert f"# {method}_resnet32.fmnist_lt" in text


def test_unknown_method_text_names_the_file_to_add(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"no card text for method 'magic'.*methods/magic\.md"):
        method_text("magic")


def test_metrics_without_test_results_are_refused(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    del metrics["test"]
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(CorruptFileError, match=r"no \['test'\] results"):
        read_metrics(run_dir)


def test_weights_changed_after_training_are_refused(run_dir):
    weights = run_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="the weights changed after training"):
        read_run_for_push(run_dir)


def test_missing_run_and_incomplete_export_folder_are_refused(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_unused")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never contacted: the checks come first
    with pytest.raises(DataNotFoundError, match="does not exist; train one"):
        push_run(tmp_path / "nope", REPO)
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "model.onnx").write_bytes(b"graph")
    with pytest.raises(DataNotFoundError, match="has no export_report.json"):
        push_run(run_dir, REPO, onnx_dir=tmp_path / "exports")


def test_reproduce_line_only_when_the_run_used_the_zoo_recipe(run_dir):
    import ltzoo

    config, metrics = read_config(run_dir), read_metrics(run_dir)
    assert "This run used a changed recipe" in str(render_card(config, metrics, REPO))  # the fixture's 1-epoch recipe
    config["ltzoo"]["recipe"] = ltzoo.get_entry("ce_resnet32.fmnist_lt").recipe().to_dict()
    text = str(render_card(config, metrics, REPO))
    assert "Reproduce with `ltzoo train ce_resnet32.fmnist_lt --out runs/ce_resnet32_fmnist_lt`." in text


def test_model_index_on_a_card_from_a_real_export_report_has_the_hubs_required_keys(run_dir, tmp_path):
    report = export(str(run_dir), tmp_path / "exports", ExportOptions(verify="parity", exporter="torchscript"))
    assert report.passed
    card = render_card(
        read_config(run_dir),
        read_metrics(run_dir),
        REPO,
        export_report=report,
        onnx_files=["onnx/model.onnx", "onnx/export_report.json"],
        hub_url="https://hub.example",
    )
    meta = _meta(str(card))
    assert meta["datasets"] == ["zalando-datasets/fashion_mnist"]  # a Hub dataset id that exists
    assert "base_model" not in meta and "base_model_relation" not in meta  # trained from scratch
    (index,) = meta["model-index"]
    assert index["name"] == "ce_resnet32.fmnist_lt" and len(index["results"]) == 2  # val and test
    for result in index["results"]:
        # The keys the Hub requires of every result, and nothing it would reject.
        assert result["task"]["type"] == "image-classification"
        assert result["dataset"]["type"] == "zalando-datasets/fashion_mnist"
        assert result["dataset"]["name"] == "fmnist_lt"
        assert "config" not in result["dataset"]  # fmnist_lt is no config of the Hub dataset
        assert result["dataset"]["split"] in ("val", "test")
        # The long-tail facts of make_run's config: IR 100 over 10 classes, index sha256 of zeros.
        assert result["dataset"]["args"] == {
            "long_tailed_subset": "fmnist_lt",
            "num_classes": 10,
            "train_images": 2478,
            "imbalance_factor": 100.0,
            "index_sha256": "0" * 64,
            "shot_rule": "absolute",
            "many_threshold": 100,
            "few_threshold": 20,
        }
        assert result["source"] == {"name": RESULTS_SOURCE, "url": f"https://hub.example/{REPO}"}
        assert [m["config"] for m in result["metrics"]] == ["all", "many", "medium", "few"]
        for metric in result["metrics"]:
            assert metric["type"] == "accuracy" and isinstance(metric["value"], float) and "(%)" in metric["name"]
    # huggingface_hub reads it back, every result with its source.
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == "ce_resnet32.fmnist_lt" and len(results) == 8
    assert {(r.source_name, r.source_url) for r in results} == {(RESULTS_SOURCE, f"https://hub.example/{REPO}")}
    assert ModelCard(str(card)).data.eval_results[0].dataset_args["imbalance_factor"] == 100.0
    text = str(card)
    assert "Paper: [arXiv:1906.07413](https://arxiv.org/abs/1906.07413)" in text  # model_cards/methods/ce.md
    assert f"| fp32 | `model.onnx` | {report.variants['fp32'].checks['parity'].details['max_abs_diff']:.2e} |" in text


def test_a_dataset_without_a_hub_id_names_none(run_dir):
    config = read_config(run_dir)
    config["ltzoo"]["dataset"] = "places_lt"  # no official Places-LT (or Places365) dataset on the Hub
    meta = _meta(str(render_card(config, read_metrics(run_dir), REPO)))
    assert "datasets" not in meta
    results = meta["model-index"][0]["results"]
    assert {r["dataset"]["type"] for r in results} == {"places_lt"}
    assert all("config" not in r["dataset"] for r in results)


def test_the_hub_does_not_import_the_export_pipeline(tmp_path):
    """Naming a graph file or reading a report must not pay for the export pipeline (ONNX Runtime's quantization
    tools and some 150 modules): checked in a fresh interpreter, where nothing else has imported them."""
    (tmp_path / "model_int8.onnx").write_bytes(b"graph")
    script = f"""
import sys
import ltzoo.hub, ltzoo.publish.card, ltzoo.publish.zoo, ltzoo.publish.push
from ltzoo.export.sessions import resolve_onnx_file
assert resolve_onnx_file({str(tmp_path)!r}, "int8").name == "model_int8.onnx"
print(sorted(m for m in sys.modules if m.startswith(("onnxruntime.quantization", "ltzoo.export.pipeline"))))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_run_fine_tuned_from_the_hub_names_its_base_model(run_dir):
    config = read_config(run_dir)
    parent = {
        "source": "hf-hub:org/ce_resnet32.fmnist_lt@" + "1" * 40,
        "name": "ce_resnet32.fmnist_lt",
        "dataset": "fmnist_lt",
        "num_classes": 10,
        "hub_repo_id": "org/ce_resnet32.fmnist_lt",
    }
    config["ltzoo"]["parent"] = parent
    meta = _meta(str(render_card(config, read_metrics(run_dir), "org/ce_resnet32.parts")))
    assert meta["base_model"] == "org/ce_resnet32.fmnist_lt" and meta["base_model_relation"] == "finetune"
    config["ltzoo"]["parent"] = {**parent, "source": "local-dir:ce_parts", "hub_repo_id": None}  # not on the Hub
    meta = _meta(str(render_card(config, read_metrics(run_dir), "org/ce_resnet32.parts")))
    assert "base_model" not in meta and "base_model_relation" not in meta


def test_every_method_card_links_its_paper_on_arxiv():
    import ltzoo

    for method in sorted({ltzoo.get_entry(name).method for name in ltzoo.list_models()}):
        assert re.fullmatch(r"\d{4}\.\d{4,5}", method_text(method).arxiv_id or ""), method


def test_the_parent_record_knows_which_hub_repo_a_parent_came_from(run_dir, tmp_path, monkeypatch):
    from ltzoo.pins import HubWeights, write_pins
    from ltzoo.planner.finetune import hub_repo_id

    assert hub_repo_id("hf-hub:org/base@" + "2" * 40) == "org/base"
    assert hub_repo_id(str(run_dir)) is None and hub_repo_id(f"local-dir:{run_dir}") is None
    assert hub_repo_id("ce_resnet32.fmnist_lt") is None  # a zoo name without pinned weights
    pins = tmp_path / "pins.json"
    write_pins(pins, {"ce_resnet32.fmnist_lt": HubWeights("zoo/ce_resnet32.fmnist_lt", "3" * 40, "4" * 64)})
    monkeypatch.setenv("LTZOO_PINS", str(pins))
    assert hub_repo_id("ce_resnet32.fmnist_lt") == "zoo/ce_resnet32.fmnist_lt"


def test_the_card_states_the_training_precision(run_dir):
    config, metrics = read_config(run_dir), read_metrics(run_dir)
    config["ltzoo"]["precision"] = "bf16"  # as the trainer records it (make_run trains nothing)
    assert "- Training precision: bf16 (the reported numbers are an fp32 evaluation" in str(
        render_card(config, metrics, REPO)
    )
    del config["ltzoo"]["precision"]  # a run from before mixed precision trained in fp32
    assert "- Training precision: fp32 (" in str(render_card(config, metrics, REPO))
