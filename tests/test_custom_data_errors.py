"""Bad user data: each case of the issue fails with an error naming the file, line or class, or (unreadable
images under --skip-bad-images) is skipped and counted. Plus the hand-computed rules behind the data:
terciles, the val hold-out, the derived recipe settings and the source string. Nothing here trains."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from custom_data_fixtures import make_imagefolder, make_split_files

from ltzoo.cli import main as ltzoo_main
from ltzoo.data import build_dataset
from ltzoo.data.holdout import holdout_sizes
from ltzoo.data.longtail import shot_split, tercile_thresholds
from ltzoo.data.sources import SourceSpec, parse_shot_thresholds
from ltzoo.errors import BadDataError, BadHyperParameterError, DataNotFoundError
from ltzoo.planner.derived import Overrides, derive_recipe
from ltzoo.planner.plan import plan_training
from ltzoo.recipe import DataSize
from ltzoo.recipes.iccl import derived_centroid_momentum
from ltzoo.recipes.rsg import derived_head_ratio
from ltzoo.registry import get_entry


def build(source: str):
    return build_dataset(source, cache=False)


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_imagefolder(tmp_path / "data", [6, 4, 3], [1, 1, 1], size=(8, 8))


@pytest.fixture
def splits(tmp_path) -> Path:
    return make_split_files(tmp_path / "data", [5, 4, 3], [1, 1, 1], size=(8, 8))


# ----- missing things ------------------------------------------------------------------------
def test_missing_paths_are_named(tmp_path, folder, splits):
    with pytest.raises(DataNotFoundError, match=f"{tmp_path / 'nowhere'} does not exist"):
        build(f"imagefolder:{tmp_path / 'nowhere'}")
    (folder / "train").rename(folder / "training")
    with pytest.raises(DataNotFoundError, match="train not found.*'training'"):
        build(f"imagefolder:{folder}")
    (splits / "mine_train.txt").rename(splits / "mine_training.txt")
    with pytest.raises(DataNotFoundError, match=r"no \*_train.txt"):
        build(f"splits:{splits}")


def test_a_listed_image_that_does_not_exist_names_the_line(splits):
    (splits / "images" / "train" / "c1_2.png").unlink()
    # mine_train.txt lists class 0 on lines 1-5, then class 1 (c1_0 on line 6): c1_2 is line 8.
    with pytest.raises(DataNotFoundError, match=r"mine_train.txt:8: .*c1_2.png does not exist"):
        build(f"splits:{splits}")


# ----- class folders and the class mapping --------------------------------------------------------
def test_empty_class_folder(folder):
    (folder / "train" / "class_3").mkdir()
    with pytest.raises(BadDataError, match=r"class folder .*train/class_3 is empty"):
        build(f"imagefolder:{folder}")


def test_empty_class_folder_in_val(folder):
    for image in (folder / "val" / "class_1").iterdir():
        image.unlink()
    (folder / "val" / "class_1" / "README").write_text("no images here")
    with pytest.raises(BadDataError, match=r"val/class_1 is empty"):
        build(f"imagefolder:{folder}")


def test_val_class_that_never_appears_in_train(folder):
    (folder / "val" / "class_1").rename(folder / "val" / "class_7")
    with pytest.raises(BadDataError, match=r"val/class_7: class 'class_7' never appears in train"):
        build(f"imagefolder:{folder}")


def test_loose_image_outside_a_class_folder(folder):
    (folder / "train" / "class_0" / "0.png").rename(folder / "train" / "stray.png")
    with pytest.raises(BadDataError, match=r"stray.png is not inside a class folder"):
        build(f"imagefolder:{folder}")


def test_classes_txt_sets_the_mapping_and_must_match_the_folders(folder):
    (folder / "classes.txt").write_text("class_2\nclass_0\nclass_1\n")
    data = build(f"imagefolder:{folder}")
    assert data.label_names == ["class_2", "class_0", "class_1"]
    assert data.class_counts == [3, 6, 4]  # class_2 (3 images) is now label 0
    assert data.train.targets[data.train.paths.index("train/class_2/0.png")] == 0
    (folder / "classes.txt").write_text("class_2\nclass_0\n")
    with pytest.raises(BadDataError, match=r"train/class_1 is a class folder not listed in .*classes.txt"):
        build(f"imagefolder:{folder}")
    (folder / "classes.txt").write_text("class_2\nclass_0\nclass_1\nclass_0\n")
    with pytest.raises(BadDataError, match=r"classes.txt:4: class 'class_0' is already named on line 2"):
        build(f"imagefolder:{folder}")
    (folder / "classes.txt").write_text("class_2\nclass_0\nclass_1\nclass_5\n")
    with pytest.raises(BadDataError, match=r"class 'class_5' of .*classes.txt has no folder"):
        build(f"imagefolder:{folder}")


# ----- split-file labels ----------------------------------------------------------------------------
def test_non_integer_label_names_the_line(splits):
    lines = (splits / "mine_val.txt").read_text().splitlines()
    lines[1] = lines[1].rsplit(" ", 1)[0] + " one"
    (splits / "mine_val.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(BadDataError, match=r"mine_val.txt:2: label 'one' is not an integer"):
        build(f"splits:{splits}")


def test_label_out_of_range_names_the_line(splits):
    (splits / "classes.txt").write_text("a\nb\nc\n")
    lines = (splits / "mine_train.txt").read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0] + " 3"  # 3 classes in classes.txt: labels 0..2
    (splits / "mine_train.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(BadDataError, match=r"mine_train.txt:4: label 3 is out of range \(labels must be in \[0, 3\)\)"):
        build(f"splits:{splits}")
    lines[3] = lines[3].rsplit(" ", 1)[0] + " -1"
    (splits / "mine_train.txt").write_text("\n".join(lines) + "\n")
    (splits / "classes.txt").unlink()
    with pytest.raises(BadDataError, match=r"mine_train.txt:4: label -1 is out of range"):
        build(f"splits:{splits}")


def test_val_label_that_never_appears_in_train(splits):
    with (splits / "mine_val.txt").open("a") as handle:
        handle.write("images/val/c0_0.png 5\n")
    (splits / "mine_val.txt").write_text((splits / "mine_val.txt").read_text().replace("images/val/c0_0.png 0\n", ""))
    with pytest.raises(BadDataError, match=r"mine_val.txt:3: label 5 never appears in train .*classes 0..2"):
        build(f"splits:{splits}")


def test_a_class_without_training_images_is_not_renumbered(splits):
    text = (splits / "mine_train.txt").read_text().replace(" 2\n", " 3\n")  # labels 0, 1, 3: class 2 has none
    (splits / "mine_train.txt").write_text(text)
    with pytest.raises(BadDataError, match=r"mine_train.txt:10: label 3 implies classes 0..3, but classes \[2\]"):
        build(f"splits:{splits}")


# ----- duplicates -----------------------------------------------------------------------------------
def test_duplicate_path_across_split_files(splits):
    with (splits / "mine_val.txt").open("a") as handle:
        handle.write("images/train/c1_0.png 1\n")
    message = r"c1_0.png is listed in both train and val \(.*mine_train.txt:6 and .*mine_val.txt:4\)"
    with pytest.raises(BadDataError, match=message):
        build(f"splits:{splits}")


def test_duplicate_image_across_folders_through_a_symlink(folder):
    (folder / "test" / "class_0").mkdir(parents=True)
    os.symlink(folder / "train" / "class_0" / "1.png", folder / "test" / "class_0" / "copy.png")
    with pytest.raises(BadDataError, match=r"listed in both train and test"):
        build(f"imagefolder:{folder}")


# ----- unreadable images ------------------------------------------------------------------------------
def test_corrupt_image_fails_by_default_and_is_counted_when_skipped(folder):
    bad = folder / "train" / "class_0" / "3.png"
    bad.write_bytes(b"this is not a png")
    truncated = folder / "train" / "class_1" / "2.png"
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(BadDataError, match=r"cannot read image .*class_0/3.png.*--skip-bad-images"):
        build(f"imagefolder:{folder}")
    data = build(f"imagefolder:{folder}?skip_bad=1")
    assert data.class_counts == [5, 3, 3]
    skipped = data.source["skipped_images"]
    assert skipped["count"] == 2 and skipped["by_split"] == {"train": 2}
    assert any("class_1/2.png" in line for line in skipped["files"])


def test_skipping_may_not_empty_a_class(folder):
    for image in (folder / "train" / "class_2").iterdir():
        image.write_bytes(b"broken")
    with pytest.raises(BadDataError, match=r"class 'class_2' has no readable training image left"):
        build(f"imagefolder:{folder}?skip_bad=1")


# ----- the command line -------------------------------------------------------------------------------
def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, folder, capsys):
    out = str(tmp_path / "o")
    assert ltzoo_main(["train", "ce_resnet32", "--data", f"imagefolder:{tmp_path / 'none'}", "--out", out]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert ltzoo_main(["train", "ce_resnet32.fmnist_lt", "--batch-size", "4", "--out", str(tmp_path / "o")]) == 2
    assert "--batch-size apply to your own data" in capsys.readouterr().err
    assert (
        ltzoo_main(
            [
                "train",
                "ce_resnet32",
                "--data",
                f"imagefolder:{folder}",
                "--queue-size",
                "64",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "--queue-size does not apply to the ce recipe" in capsys.readouterr().err
    assert (
        ltzoo_main(
            [
                "train",
                "ce_resnet32",
                "--data",
                f"imagefolder:{folder}",
                "--shot-thresholds",
                "5,50",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "FEW <= MANY" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ----- rules, by hand -----------------------------------------------------------------------------------
def test_terciles_by_hand():
    # 4 classes ranked 100 > 60 > 20 > 10, thirds of sizes 2 / 1 / 1: many > 20, few < 20.
    assert tercile_thresholds([10, 100, 20, 60]) == (20, 20)
    split = shot_split([10, 100, 20, 60], rule="terciles")
    assert (split.many, split.medium, split.few) == ([1, 3], [2], [0])
    # Ties at a boundary go to medium: 50 > 30 = 30 > 10 > 5 -> many > 30 (only 50), few < 10.
    split = shot_split([50, 30, 30, 10, 5], rule="terciles")
    assert (split.many, split.medium, split.few) == ([0], [1, 2, 3], [4])
    with pytest.raises(BadHyperParameterError):
        tercile_thresholds([7])


def test_holdout_sizes_by_hand():
    # N = 267, C = 6: K = round(4.45) = 4; caps n // 5 = 40, 10, 2, 0, 0, 0; classes of 3+ give at least 1.
    assert holdout_sizes([200, 50, 10, 4, 2, 1]) == [4, 4, 2, 1, 0, 0]


def test_derived_rules_by_hand():
    recipe = get_entry("dscl_pbsd_resnet32.cifar100_lt").recipe()  # stages 200 + 40 epochs, batch 256 / 512
    adapted, record = derive_recipe(recipe, 20_000, 40)
    assert record["epochs"]["value"] == 100  # 200 * 10,000 / 20,000
    assert [s.epochs for s in adapted.stages] == [83, 17]  # 100 spread as 200 : 40
    assert [s.batch_size for s in adapted.stages] == [256, 512]  # cap 2^floor(log2(2500)) = 2048
    assert adapted.method_args["queue_size"] == 8192  # largest power of two <= 10,000
    adapted, record = derive_recipe(recipe, 1_000, 40, overrides=Overrides(batch_size=32, lr=0.5))
    assert record["epochs"]["value"] == 200 and [s.batch_size for s in adapted.stages] == [32, 32]
    # stage 2 keeps its ratio to stage 1: 1.0 x 32/512 over 0.1 x 32/256 = 5, so 0.5 -> 2.5
    assert [s.lr for s in adapted.stages] == [0.5, 2.5]
    assert record["batch_size"]["from"] == "override" and record["queue_size"]["from"] == "derived"
    assert derive_recipe(recipe, 1_000_000, 40)[1]["epochs"]["value"] == 30
    assert derive_recipe(recipe, 30_000, 40, finetune=True)[1]["epochs"]["value"] == 10
    # ICCL: 1,000 images at batch 64 -> 15 steps; 100 classes -> 15 x 0.64 = 9.6 updates -> 1 - 1/9.6
    assert derived_centroid_momentum(DataSize(1_000, 100, batch_size=64)) == round(1 - 1 / 9.6, 4)
    assert derived_centroid_momentum(DataSize(100_000, 10, batch_size=256)) == 0.99
    assert [derived_head_ratio(DataSize(1_000, classes, 64)) for classes in (10, 4, 2)] == [0.2, 0.25, 0.5]
    with pytest.raises(BadHyperParameterError, match="--head-ratio does not apply to the dscl_pbsd recipe .* RSG"):
        derive_recipe(recipe, 1_000, 40, overrides=Overrides(method_args={"head_ratio": 0.3}))
    with pytest.raises(BadHyperParameterError, match=r"--queue-size must be >= 1, got 0"):
        derive_recipe(recipe, 1_000, 40, overrides=Overrides(method_args={"queue_size": 0}))


def test_source_string_round_trip_and_bad_options(tmp_path):
    spec = SourceSpec.parse(f"splits:{tmp_path}?shots=terciles&size=28x28&chans=1&mean=0.3&std=0.35&skip_bad=1")
    assert spec.name == f"splits:{tmp_path}?size=28x28&chans=1&mean=0.3&std=0.35&shots=terciles&skip_bad=1"
    assert SourceSpec.parse(spec.name) == spec
    assert SourceSpec.parse(f"imagefolder:{tmp_path}?shots=100,20").name == f"imagefolder:{tmp_path}"
    assert parse_shot_thresholds(" 50,10 ") == "50,10"
    for bad in (
        "folder:/x",
        "imagefolder:",
        f"imagefolder:{tmp_path}?colour=1",
        f"imagefolder:{tmp_path}?chans=2",
        f"imagefolder:{tmp_path}?size=big",
        f"imagefolder:{tmp_path}?shots=many",
    ):
        with pytest.raises(BadHyperParameterError):
            SourceSpec.parse(bad)


def test_options_that_need_own_data_are_refused_for_zoo_datasets():
    with pytest.raises(BadHyperParameterError, match="--shot-thresholds, --skip-bad-images apply to your own data"):
        plan_training("ce_resnet32.fmnist_lt", shot_thresholds="terciles", skip_bad_images=True)
    with pytest.raises(BadHyperParameterError, match="--lr, --centroid-momentum apply to your own data"):
        plan_training("iccl_resnet32.fmnist_lt", overrides=Overrides(lr=0.1, method_args={"centroid_momentum": 0.5}))


def test_each_method_knob_is_an_option_of_ltzoo_train(capsys):
    """The recipe modules declare their data-size knobs; `ltzoo train` offers one option per knob."""
    with pytest.raises(SystemExit):
        ltzoo_main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for option, text in (
        ("--queue-size", "DSCL recipes: momentum-queue length"),
        ("--centroid-momentum", "ICCL recipes: class-centroid momentum"),
        ("--head-ratio", "RSG recipes: fraction of classes that are head"),
    ):
        assert f"{option} {option[2:].replace('-', '_').upper()} {text} (default: derived)" in help_text
