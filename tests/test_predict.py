"""A model's data config and transform (`ltzoo.data_config`, `ltzoo.create_transform`) and `ltzoo predict`:
the tensor an image file becomes is the one the evaluator feeds, and so are the predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from custom_data_fixtures import write_image
from hub_fixtures import isolated_process, make_run  # noqa: F401 (fixtures)
from PIL import Image
from timm.data import resolve_model_data_config
from torch.utils.data import Subset

import ltzoo
from ltzoo.cli import main as ltzoo_main
from ltzoo.data import TransformedDataset, build_dataset, dataset_spec, eval_transform
from ltzoo.data.datasets import FileImageDataset
from ltzoo.engine.evaluator import OrtPredictor, TorchPredictor, predict
from ltzoo.models import build_model
from ltzoo.runs import build_config, save_run

# Test images: (size (H, W), PIL mode) of every kind a user hands in, written as real files.
KINDS = [
    ((20, 24), "RGB"),
    ((37, 19), "L"),
    ((64, 64), "RGB"),
    ((33, 45), "I;16"),
    ((16, 16), "RGBA"),
    ((50, 30), "P"),
    ((28, 28), "LA"),
]


def _write_test_images(folder: Path) -> list[Path]:
    """One file per kind; RGBA / P / LA are made from RGB or L pixels (write_image writes RGB, L, I;16)."""
    rng = np.random.default_rng(3)
    paths = []
    for i, (size, mode) in enumerate(KINDS):
        base = "L" if mode in ("L", "LA") else ("I;16" if mode == "I;16" else "RGB")
        path = write_image(folder / f"{i}_{mode.replace(';', '')}.png", size, base, 40 * i, rng)
        if mode in ("RGBA", "P", "LA"):
            Image.open(path).convert(mode).save(path)
        assert Image.open(path).mode == mode
        paths.append(path)
    return paths


def _imagefolder(root: Path, train_mode: str) -> Path:
    """2 classes of training images in ``train_mode`` (so the data trains as L or RGB), the test split of KINDS."""
    rng = np.random.default_rng(0)
    for cls in range(2):
        for i in range(8):
            write_image(root / "train" / f"c{cls}" / f"{i}.png", (24, 24), train_mode, 100 * cls, rng)
    _write_test_images(root / "test" / "c0")
    return root


def _untrained_run(data, out: Path) -> Path:
    """A run on ``data`` without training: what ltzoo.load gives for a model trained on it."""
    model = build_model("resnet32", data.num_classes, in_chans=data.info.in_chans).eval()
    config = build_config(
        model,
        arch="resnet32",
        in_chans=data.info.in_chans,
        head={"type": "linear"},
        label_names=data.label_names,
        data_info=json.loads(json.dumps(data.info.to_dict())),
        longtail=data.summary(),
        ltzoo_fields={"name": "untrained"},
    )
    return save_run(out, model, config, {})


@pytest.mark.parametrize("train_mode", ["L", "RGB"])
def test_create_transform_gives_the_evaluators_tensor_on_files_of_any_size_and_mode(train_mode, tmp_path):
    data = build_dataset(f"imagefolder:{_imagefolder(tmp_path / 'own', train_mode)}", cache=False)
    assert data.info.in_chans == (1 if train_mode == "L" else 3)
    model = ltzoo.load(str(_untrained_run(data, tmp_path / "run")))
    transform = ltzoo.create_transform(model)
    fed = TransformedDataset(data.test, eval_transform(data.info))  # what the evaluator feeds, image by image
    assert isinstance(data.test, FileImageDataset) and len(fed) == len(KINDS)
    for index, relative in enumerate(data.test.paths):
        with Image.open(data.test.root / relative) as raw:  # as a user opens it: its own mode and size
            tensor = transform(raw)
        assert tensor.shape == (data.info.in_chans, 32, 32)
        assert torch.equal(tensor, fed[index][0]), relative
    # timm reads the same data config off the model, and a source name gives it too.
    config = ltzoo.data_config(model)
    assert ltzoo.data_config(str(tmp_path / "run")) == config and config.crop_mode == "squash"
    resolved = resolve_model_data_config(model)
    assert {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in resolved.items()} == config.to_dict()


def test_create_transform_matches_the_evaluator_for_zoo_datasets(fmnist, tmp_path):
    # fmnist_lt: in-memory uint8 tensors in the evaluator, PNG files of them for a user.
    transform = ltzoo.create_transform(ltzoo.create_model("ce_resnet32.fmnist_lt"))
    reference = eval_transform(fmnist.info)
    for index in range(0, 200, 17):
        image, _ = fmnist.test[index]
        path = tmp_path / f"{index}.png"
        Image.fromarray(image[0].numpy()).save(path)
        assert torch.equal(transform(Image.open(path)), reference(image))
    # ImageNet-LT (no data here, so its spec and files of several sizes): shorter side to 256, centre 224.
    info = dataset_spec("imagenet_lt")
    assert ltzoo.data_config("ce_resnet50.imagenet_lt").to_dict() == {
        "input_size": [3, 224, 224],
        "interpolation": "bilinear",
        "crop_pct": 0.875,
        "crop_mode": "center",
        "mean": list(info.mean),
        "std": list(info.std),
    }
    paths = _write_test_images(tmp_path / "files")
    files = FileImageDataset(tmp_path / "files", [p.name for p in paths], [0] * len(paths), "RGB")
    transform = ltzoo.create_transform("ce_resnet50.imagenet_lt")
    for index, path in enumerate(paths):
        assert torch.equal(transform(Image.open(path)), eval_transform(info)(files[index][0])), path.name


# ----- ltzoo predict ------------------------------------------------------------------------------
def _predict_cli(capsys, *argv: str) -> dict:
    assert ltzoo_main(["predict", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def test_pngs(fmnist, tmp_path_factory) -> tuple[list[int], list[Path]]:
    """Two test images per class as grayscale PNG files."""
    folder = tmp_path_factory.mktemp("pngs")
    targets = np.asarray(fmnist.test.targets)
    indices = [int(i) for cls in range(10) for i in np.flatnonzero(targets == cls)[:2]]
    paths = []
    for index in indices:
        paths.append(folder / f"test_{index}.png")
        Image.fromarray(fmnist.test[index][0][0].numpy()).save(paths[-1])
    return indices, paths


def test_predict_gives_the_evaluators_top1_through_torch_and_the_int8_graph(
    ce_fmnist_run, fmnist, test_pngs, tmp_path, capsys
):
    from ltzoo.export.pipeline import ExportOptions, export
    from ltzoo.export.providers import create_session

    indices, paths = test_pngs
    subset = Subset(fmnist.test, indices)
    model = ltzoo.load(str(ce_fmnist_run))
    logits, _ = predict(TorchPredictor(model), subset, eval_transform(fmnist.info))
    result = _predict_cli(capsys, str(ce_fmnist_run), *map(str, paths), "--top-k", "3")
    assert result["runtime"] == "pytorch" and [p["image"] for p in result["predictions"]] == list(map(str, paths))
    assert [p["top_k"][0]["index"] for p in result["predictions"]] == logits.argmax(axis=1).tolist()
    first = result["predictions"][0]["top_k"]
    assert len(first) == 3 and first[0]["label"] == fmnist.label_names[first[0]["index"]]
    probabilities = torch.softmax(torch.from_numpy(logits[0]).double(), 0)
    assert first[0]["probability"] == pytest.approx(float(probabilities.max()), rel=1e-5)
    # An RGB copy of a grayscale file is the same image to a 1-channel model.
    rgb = tmp_path / "rgb.png"
    Image.open(paths[0]).convert("RGB").save(rgb)
    assert (
        _predict_cli(capsys, str(ce_fmnist_run), str(rgb))["predictions"][0]["top_k"]
        == _predict_cli(capsys, str(ce_fmnist_run), str(paths[0]))["predictions"][0]["top_k"]
    )

    out = tmp_path / "exports"
    export(
        str(ce_fmnist_run),
        out,
        ExportOptions(int8=True, calib_size=64, calib_method="minmax", verify="none"),
        data=fmnist,
    )
    session = create_session(out / "model_int8.onnx")
    assert ltzoo.data_config(session) == ltzoo.data_config(model)  # the graph declares the model's preprocessing
    int8_logits, _ = predict(OrtPredictor(session), subset, eval_transform(fmnist.info))
    result = _predict_cli(capsys, str(out), *map(str, paths), "--onnx", "int8", "--top-k", "1")
    assert result["runtime"] == "onnxruntime int8"
    assert [p["top_k"][0]["index"] for p in result["predictions"]] == int8_logits.argmax(axis=1).tolist()


def test_predict_names_every_missing_or_corrupt_image(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:400])  # cut inside the pixel data
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    missing = tmp_path / "missing.png"
    code = ltzoo_main(["predict", str(run), str(good), str(truncated), str(not_image), str(missing)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot read 3 of 4 image(s)" in err
    assert f"{truncated}: cannot decode the image" in err and "truncated or corrupt" in err
    assert f"{not_image}: not an image file" in err and f"{missing}: no such file" in err
    assert str(good) not in err


def test_predict_help_explains_sources_onnx_and_preprocessing(capsys):
    with pytest.raises(SystemExit) as exit_info:
        ltzoo_main(["predict", "--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    for phrase in (
        "hf-hub:ORG/REPO",
        "local-dir:PATH",
        "--onnx {fp32,fp16,int8}",
        "--top-k",
        "--json",
        "data config",
        "export folder",
    ):
        assert phrase in text, phrase
