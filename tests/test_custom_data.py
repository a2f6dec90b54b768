"""Your own long-tailed data: both layouts, counts/splits/thresholds, CE and DSCL+PBSD runs, eval, export
with the dataset gate, fine-tuning from a saved run with another class count, and the Hub card.

The datasets are small real PNG files written in tmp dirs with an imbalanced profile; every expected
number below is computed by hand from that profile and the documented rules.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from custom_data_fixtures import make_imagefolder, make_split_files, write_image
from hub_fixtures import ORG, hub_env, isolated_process, local_hub  # noqa: F401 (fixtures)
from huggingface_hub import hf_hub_download

import ltzoo
from ltzoo.cli import main as ltzoo_main
from ltzoo.data import build_dataset
from ltzoo.data.transforms import eval_transform, train_transform
from ltzoo.errors import BadHyperParameterError
from ltzoo.export.pipeline import ExportOptions, export
from ltzoo.planner.derived import Overrides
from ltzoo.planner.plan import plan_training, run_plan
from ltzoo.runs import load_run

FOLDER_TRAIN = [40, 20, 10, 5, 3]  # N = 78, imbalance factor 40 / 3
SPLITS_TRAIN = [30, 14, 7, 3]  # N = 54 before the val hold-out
SPLITS_CLASSES = ["bolt", "nut", "washer", "rivet"]


@contextlib.contextmanager
def one_thread():
    """Tiny models train several times faster single-threaded on a busy 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = ltzoo_main(list(argv))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory) -> Path:
    """imagefolder layout, 5 classes, class 3 stored as grayscale (so the data is mixed: trained as RGB)."""
    root = make_imagefolder(tmp_path_factory.mktemp("own") / "parts", FOLDER_TRAIN, [2] * 5, [2] * 5, gray_classes=(3,))
    (root / "train" / "class_0" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def splits_root(tmp_path_factory) -> Path:
    """splits layout, 4 grayscale classes named by classes.txt, no val and no test split."""
    return make_split_files(tmp_path_factory.mktemp("own") / "hardware", SPLITS_TRAIN, classes=SPLITS_CLASSES)


@pytest.fixture(scope="module")
def ce_run(folder_root, tmp_path_factory) -> tuple[Path, str]:
    """`ltzoo train ce_resnet32 --data imagefolder:...` through the CLI entry point (in process)."""
    out = tmp_path_factory.mktemp("runs") / "ce_parts"
    with one_thread():
        code, printed = run_cli(
            "train",
            "ce_resnet32",
            "--data",
            f"imagefolder:{folder_root}",
            "--out",
            str(out),
            "--epochs",
            "2",
            "--steps-per-epoch",
            "2",
        )
    assert code == 0, printed
    return out, printed


# ----- data: counts, splits, thresholds ---------------------------------------------------------
def test_imagefolder_counts_splits_and_default_thresholds(folder_root):
    data = build_dataset(f"imagefolder:{folder_root}")
    assert data.name == f"imagefolder:{folder_root.resolve()}"
    assert data.label_names == [f"class_{c}" for c in range(5)]
    assert data.class_counts == FOLDER_TRAIN
    assert data.imbalance_factor == pytest.approx(40 / 3)
    assert (len(data.train), len(data.val), len(data.test)) == (78, 10, 10)
    # Default OLTR rule: many > 100, few < 20: 40 and 20 are medium, 10/5/3 few, nothing many.
    assert (data.shots.many, data.shots.medium, data.shots.few) == ([], [0, 1], [2, 3, 4])
    assert data.shots.thresholds() == {"many": 100, "few": 20, "rule": "absolute"}
    # Mixed RGB and grayscale images train as RGB, resized to the default 32x32.
    assert data.info.in_chans == 3 and data.info.input_size == (32, 32) and data.info.augment == "generic"
    image, label = data.train[len(data.train) - 1]
    assert image.mode == "RGB" and image.size == (24, 20) and label == 4
    assert eval_transform(data.info)(image).shape == (3, 32, 32)
    assert train_transform(data.info)(image).shape == (3, 32, 32)
    assert data.source["train_image_modes"] == {"RGB": 73, "L": 5}
    assert data.source["ignored_non_image_files"] == 1  # notes.txt
    assert data.summary()["shot_split"]["rule"] == "absolute"


def test_shot_thresholds_can_be_set_or_relative(folder_root):
    custom = build_dataset(f"imagefolder:{folder_root}?shots=30,8")
    # many > 30: {40}; few < 8: {5, 3}; the rest medium.
    assert (custom.shots.many, custom.shots.medium, custom.shots.few) == ([0], [1, 2], [3, 4])
    terciles = build_dataset(f"imagefolder:{folder_root}?shots=terciles")
    # 5 classes ranked 40 > 20 > 10 > 5 > 3 in thirds of sizes 2 / 2 / 1: many > 10, few < 5.
    assert (terciles.shots.many, terciles.shots.medium, terciles.shots.few) == ([0, 1], [2, 3], [4])
    assert terciles.shots.thresholds() == {"many": 10, "few": 5, "rule": "terciles"}


def test_splits_layout_holds_out_a_balanced_val_and_says_so(splits_root, caplog):
    caplog.set_level("WARNING", logger="ltzoo.data")
    data = build_dataset(f"splits:{splits_root}", cache=False)
    assert data.label_names == SPLITS_CLASSES  # from classes.txt
    # Hold-out: N = 54, C = 4 -> K = round(0.1 * 54 / 4) = 1 per class; the 3-image class can give 1.
    assert data.class_counts == [29, 13, 6, 2]
    assert sorted(data.val.targets) == [0, 1, 2, 3]
    assert len(data.test) == 0
    assert data.source["val"]["held_out_from_train"] is True and data.source["val"]["per_class"] == [1, 1, 1, 1]
    assert data.info.in_chans == 1  # every image is grayscale
    assert "held out 4 training images" in caplog.text and "no test split" in caplog.text
    # The draw is seeded: rebuilding gives the same split (eval and export rebuild it from the name).
    again = build_dataset(f"splits:{splits_root}", cache=False)
    assert again.val.paths == data.val.paths and again.index_sha256 == data.index_sha256
    assert not set(data.val.paths) & set(data.train.paths)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    root = make_imagefolder(tmp_path / "scan", [3, 2], [1, 1])
    write_image(root / "train" / "class_1" / "deep.png", (8, 8), "I;16", 100, np.random.default_rng(0))
    data = build_dataset(f"imagefolder:{root}")
    index = data.train.paths.index("train/class_1/deep.png")
    pixels = np.asarray(data.train[index][0])
    # Written as (100 + noise in [0, 40)) * 257: scaled back by 1/257, not clipped at 255.
    assert 100 <= pixels.min() and pixels.max() < 140


# ----- training --------------------------------------------------------------------------------
def test_ce_run_prints_and_stores_the_derived_settings(ce_run, folder_root):
    run, printed = ce_run
    config = json.loads((run / "config.json").read_text())
    lt = config["ltzoo"]
    assert lt["dataset"] == f"imagefolder:{folder_root.resolve()}" and lt["name"] == "ce_resnet32.parts"
    assert lt["class_counts"] == FOLDER_TRAIN and config["label_names"] == [f"class_{c}" for c in range(5)]
    assert lt["shot_split"]["few"] == [2, 3, 4]
    # N = 78: batch capped at the largest power of two <= 78 / 8 (8); lr 0.1 (at 128) scaled to 0.1 * 8 / 128.
    derived = lt["derived"]
    assert derived["epochs"] == {**derived["epochs"], "value": 2, "from": "override"}
    assert derived["batch_size"]["value"] == {"main": 8} and derived["batch_size"]["from"] == "derived"
    assert derived["lr"]["value"] == {"main": 0.00625}
    stage = lt["recipe"]["stages"][0]
    assert (stage["epochs"], stage["batch_size"], stage["lr"]) == (2, 8, 0.00625)
    assert "batch size" in printed and "0.00625" in printed and "--batch-size" in printed
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [(line["epoch"], line["step"]) for line in log] == [(1, 2), (2, 4)]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["num_samples"] == 10 and len(metrics["test"]["per_class"]) == 5


def test_dscl_pbsd_trains_on_split_files_with_derived_queue(splits_root, tmp_path):
    plan = plan_training(
        "dscl_pbsd_resnet32", data=f"splits:{splits_root}", shot_thresholds="terciles", overrides=Overrides(epochs=2)
    )
    # 50 training images after the hold-out: queue = largest power of two <= 25 (16), batch 8.
    assert plan.derived["queue_size"]["value"] == 16 and plan.recipe.method_args["queue_size"] == 16
    assert [s.batch_size for s in plan.recipe.stages] == [8, 8]
    with one_thread():
        metrics = run_plan(plan, str(tmp_path / "dscl"), steps_per_epoch=2)
    model, config = ltzoo.load(f"local-dir:{tmp_path / 'dscl'}", with_config=True)
    assert config["model_args"]["in_chans"] == 1 and model.num_classes == 4
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 4)
    # terciles of 29 > 13 > 6 > 2 (sizes 2 / 1 / 1): many > 6, few < 6.
    assert config["ltzoo"]["shot_split"]["many"] == [0, 1] and config["ltzoo"]["shot_split"]["few"] == [3]
    assert metrics["val"]["shot_thresholds"] == {"many": 6, "few": 6, "rule": "terciles"}
    assert metrics["test"]["all"] is None  # no test split: no test numbers, never a copy of val


# ----- the rest of the product on such a run -----------------------------------------------------
def test_eval_cli_rebuilds_the_dataset_even_when_moved(ce_run, folder_root, tmp_path):
    run, _ = ce_run
    recorded = json.loads((run / "metrics.json").read_text())
    code, printed = run_cli("eval", str(run), "--split", "val", "--json")
    assert code == 0 and json.loads(printed)["per_class"] == recorded["val"]["per_class"]
    moved = shutil.copytree(folder_root, tmp_path / "moved")
    code, printed = run_cli("eval", str(run), "--split", "test", "--json", "--data-root", str(moved))
    assert code == 0 and json.loads(printed)["per_class"] == recorded["test"]["per_class"]


def test_eval_refuses_data_whose_classes_changed(ce_run, folder_root, tmp_path, capsys):
    run, _ = ce_run
    changed = shutil.copytree(folder_root, tmp_path / "changed")
    (changed / "train" / "class_4").rename(changed / "train" / "class_9")
    (changed / "val" / "class_4").rename(changed / "val" / "class_9")
    (changed / "test" / "class_4").rename(changed / "test" / "class_9")
    assert ltzoo_main(["eval", str(run), "--data-root", str(changed)]) == 2
    assert "class_9" in capsys.readouterr().err


def test_init_keeps_the_backbone_and_resets_the_head(ce_run, splits_root):
    parent, _ = ce_run
    plan = plan_training("ce_resnet32", data=f"splits:{splits_root}", init=str(parent))
    parent_model, _ = load_run(parent)
    for key, value in parent_model.backbone.state_dict().items():
        assert torch.equal(plan.model.backbone.state_dict()[key], value), key
    assert plan.model.head.weight.shape == (4, 64) and plan.model.num_classes == 4  # 4 new classes, 64-d features
    # The data is fed as the parent saw it: 3 channels, although every image is grayscale.
    assert plan.data.info.in_chans == 3 and "chans=3" in plan.data.name
    # Fine-tuning, 50 images: 30 epochs; batch 8; lr 0.1 (at batch 128) scaled to batch 8, then a tenth.
    assert plan.derived["epochs"]["value"] == 30
    assert plan.derived["lr"]["value"] == {"main": pytest.approx(0.1 * 8 / 128 * 0.1)}


@pytest.fixture(scope="module")
def finetuned(ce_run, splits_root, tmp_path_factory) -> Path:
    parent, _ = ce_run
    plan = plan_training(
        "ce_resnet32",
        data=f"splits:{splits_root}",
        init=str(parent),
        shot_thresholds="terciles",
        overrides=Overrides(epochs=1),
    )
    out = tmp_path_factory.mktemp("runs") / "finetuned"
    with one_thread():
        run_plan(plan, str(out), steps_per_epoch=2)
    return out


def test_finetune_from_a_saved_run_with_another_class_count(finetuned, ce_run):
    parent, _ = ce_run
    config = json.loads((finetuned / "config.json").read_text())
    parent_config = json.loads((parent / "config.json").read_text())
    assert config["num_classes"] == 4 and config["label_names"] == SPLITS_CLASSES
    record = config["ltzoo"]["parent"]
    assert record["source"] == str(parent) and record["name"] == "ce_resnet32.parts" and record["num_classes"] == 5
    assert record["weights_sha256"] == parent_config["ltzoo"]["weights_sha256"]
    assert config["ltzoo"]["derived"]["finetune"] is True
    assert ltzoo.load(f"local-dir:{finetuned}")(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    # No test split: `ltzoo eval` prints '-' for every class instead of failing.
    code, printed = run_cli("eval", str(finetuned), "--split", "test")
    assert code == 0 and printed.count("  -\n") == 4


def test_init_of_another_architecture_trains_that_backbone(ce_run, splits_root):
    """The zoo entry names the method; --init names the backbone (a ResNet-50 recipe fine-tunes the ResNet-32)."""
    parent, _ = ce_run
    plan = plan_training("ce_resnet50", data=f"splits:{splits_root}", init=str(parent))
    assert plan.recipe.arch == "resnet32" and plan.name.startswith("ce_resnet32.")
    assert (
        plan.extra_config["parent"]["arch"] == "resnet32"
        and plan.extra_config["zoo_recipe"] == "ce_resnet50.imagenet_lt"
    )
    with pytest.raises(BadHyperParameterError, match="--arch resnet18 but --init"):
        plan_training("ce_resnet50", data=f"splits:{splits_root}", init=str(parent), arch="resnet18")


def test_export_gate_and_hub_card_on_the_finetuned_run(finetuned, hub_env, tmp_path):
    exports = tmp_path / "exports"
    with one_thread():
        report = export(str(finetuned), exports, ExportOptions(verify="dataset"))
    assert report.passed, [str(failure) for failure in report.failures]
    verification = report.verification
    # The gate scores the user's own tail: terciles of the fine-tuning data, few = class 3 ("rivet").
    assert verification.shot_thresholds == {"many": 6, "few": 6, "rule": "terciles"}
    val = verification.results["val"]
    assert val["pytorch"].few == val["pytorch"].per_class[3] and val["fp32"].num_samples == 4
    assert verification.deltas["test"]["fp32"]["all"] is None  # no test split

    repo = f"{ORG}/ce_resnet32.hardware"
    code, _ = run_cli("push", "--model", str(finetuned), "--repo-id", repo, "--onnx", str(exports))
    assert code == 0
    readme = Path(hf_hub_download(repo, "README.md", endpoint=hub_env.url, cache_dir=tmp_path / "dl")).read_text()
    front = yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", readme, re.S).group(1))
    assert "datasets" not in front  # the user's data is not a Hub dataset
    assert front["model-index"][0]["results"][0]["dataset"]["name"] == "hardware"
    assert "own long-tailed dataset `hardware`" in readme and "(the author's own data)" in readme
    assert "Fine-tuned from" in readme and "ce_resnet32.parts" in readme and "Reproduce with" not in readme
    for index, (name, count) in enumerate(zip(SPLITS_CLASSES, [29, 13, 6, 2])):
        assert f"| {index} | {name} | {count} |" in readme
    plot = hf_hub_download(repo, "per_class_accuracy.png", endpoint=hub_env.url, cache_dir=tmp_path / "dl")
    assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nothing_local_is_pushed_and_the_pushed_run_evaluates_elsewhere(
    finetuned, splits_root, hub_env, tmp_path, tmp_path_factory
):
    """An own-data run fine-tuned from a local run, pushed with its export: every pushed file is searched for
    the temp folder (its data, its parent run, its export and itself all live there)."""
    exports = tmp_path / "exports"
    with one_thread():
        export(str(finetuned), exports, ExportOptions(verify="parity", exporter="torchscript"))
    repo = f"{ORG}/ce_resnet32.hardware_portable"
    code, _ = run_cli("push", "--model", str(finetuned), "--repo-id", repo, "--onnx", str(exports))
    assert code == 0
    from huggingface_hub import HfApi

    files = HfApi(endpoint=hub_env.url).list_repo_files(repo)
    assert {"config.json", "README.md", "onnx/model.onnx", "onnx/export_report.json"} <= set(files)
    temp = str(tmp_path_factory.getbasetemp())
    assert str(splits_root).startswith(temp) and str(finetuned).startswith(temp)  # so the search means something
    for name in files:
        data = Path(hf_hub_download(repo, name, endpoint=hub_env.url, cache_dir=tmp_path / "dl")).read_bytes()
        for local in (temp, str(Path(temp).resolve()), "/tmp/", str(Path.home()) + "/"):
            assert local.encode() not in data, f"{name} carries {local}"

    config = json.loads(
        Path(hf_hub_download(repo, "config.json", endpoint=hub_env.url, cache_dir=tmp_path / "dl")).read_text()
    )
    lt = config["ltzoo"]
    assert lt["dataset"] == "splits:hardware?chans=3&shots=terciles"  # by folder name, with its options
    assert lt["source"]["path"] == "hardware" and lt["parent"]["source"] == "local-dir:ce_parts"
    assert lt["parent"]["dataset"] == "imagefolder:parts" and lt["parent"]["hub_repo_id"] is None
    # The local run keeps where its data is on this machine (ltzoo eval RUN needs it).
    assert json.loads((finetuned / "config.json").read_text())["ltzoo"]["dataset"].startswith(f"splits:{splits_root}")
    report = json.loads(
        Path(
            hf_hub_download(repo, "onnx/export_report.json", endpoint=hub_env.url, cache_dir=tmp_path / "dl")
        ).read_text()
    )
    assert report["source"]["spec"] == "local-dir:finetuned" and report["source"]["dataset"] == lt["dataset"]

    # Elsewhere, the pushed run is evaluated on a copy of its data named by --data-root.
    recorded = json.loads((finetuned / "metrics.json").read_text())
    code, printed = run_cli("eval", f"hf-hub:{repo}", "--split", "val", "--json", "--data-root", str(splits_root))
    assert code == 0 and json.loads(printed)["per_class"] == recorded["val"]["per_class"]
