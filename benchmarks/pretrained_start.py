"""Fine-tuning from a pretrained backbone against training from scratch: the same recipe and data, 3 seeds.

No real ImageNet weights can be downloaded here, so the backbone is pretrained on data that does not overlap the
target: a *balanced* draw of Fashion-MNIST training images (``--pretrain-per-class`` per class) that fmnist_lt
uses for neither train nor val, with the CE recipe. The target is another dataset: the handwritten digits that
scikit-learn ships (``sklearn.datasets.load_digits``: 1,797 images of 8 x 8, ten classes), brought to 28 x 28
and made long-tailed (imbalance 10 over the ten classes, from what is left after a balanced test and val split),
written as an image folder and trained with ``ltzoo train ce_resnet32 --data imagefolder:...`` as a user would:

- scratch: the data read as the pretrained backbone reads it (28 x 28, one channel, Fashion-MNIST's mean/std);
- pretrained: the same, with ``--init`` the pretraining run (``--trainable all``: the whole backbone fine-tunes);
- pretrained, scratch lr: the same start at the scratch run's learning rate (``--lr``), not the derived tenth.

Every arm at ``--epochs`` (the same budget); test top-1 all/many/medium/few as mean ± std over the seeds.

    .venv/bin/python -m benchmarks.pretrained_start [--quick]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import GROUPS, WORK_DIR, fmt_mean_std, markdown_table, write_results

IMBALANCE = 10
TEST_PER_CLASS, VAL_PER_CLASS = 50, 20
SEEDS = (0, 1, 2)
ARMS = ("scratch", "pretrained", "pretrained, scratch lr")


def write_digits_lt(root: Path, seed: int = 0) -> Path:
    """scikit-learn's digits as a long-tailed image folder: train (imbalance 10), balanced val and test."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    rest = {c: rng.permutation(np.flatnonzero(digits.target == c)) for c in range(10)}
    largest = min(len(v) for v in rest.values()) - TEST_PER_CLASS - VAL_PER_CLASS
    counts = [int(np.floor(largest * IMBALANCE ** (-c / 9))) for c in range(10)]
    for c, indices in rest.items():
        splits = {
            "test": indices[:TEST_PER_CLASS],
            "val": indices[TEST_PER_CLASS : TEST_PER_CLASS + VAL_PER_CLASS],
            "train": indices[TEST_PER_CLASS + VAL_PER_CLASS :][: counts[c]],
        }
        for split, chosen in splits.items():
            folder = root / split / f"digit_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255
                Image.fromarray(pixels, mode="L").resize((28, 28), Image.BILINEAR).save(folder / f"{i}.png")
    return root


def write_pretraining_set(root: Path, per_class: int) -> Path:
    """A balanced Fashion-MNIST image folder from training images that fmnist_lt uses for neither train nor val."""
    from PIL import Image

    from ltzoo.data import build_dataset
    from ltzoo.data.fmnist import locate_fashion_mnist
    from ltzoo.data.idx import read_idx

    lt = build_dataset("fmnist_lt")
    used = {bytes(img.numpy()) for split in (lt.train, lt.val) for img in split.images}
    files = locate_fashion_mnist()
    images, labels = read_idx(files["train_images"]), read_idx(files["train_labels"])
    for c in range(10):
        kept = 0
        for i in np.flatnonzero(labels == c)[::-1]:  # from the end of the file: away from what fmnist_lt drew first
            if kept == per_class:
                break
            if images[i].tobytes() in used:
                continue
            split = "val" if kept < max(1, per_class // 10) else "train"
            folder = root / split / lt.label_names[c].replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i], mode="L").save(folder / f"{i}.png")
            kept += 1
    return root


def train(args: list[str]) -> dict[str, Any]:
    from ltzoo.cli import main

    out = Path(args[args.index("--out") + 1])
    if not (out / "metrics.json").is_file():
        if main(["train", *args]) != 0:
            raise SystemExit(f"ltzoo train {' '.join(args)} failed")
    return json.loads((out / "metrics.json").read_text())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, a small pretraining set")
    parser.add_argument("--epochs", type=int, default=30, help="the target's budget, the same for every arm")
    parser.add_argument("--pretrain-per-class", type=int, default=500)
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    args = parser.parse_args(argv)
    seeds = SEEDS[:1] if args.quick else SEEDS
    epochs, pre_epochs, per_class = (
        (2, 1, 50) if args.quick else (args.epochs, args.pretrain_epochs, args.pretrain_per_class)
    )
    work = WORK_DIR / "pretrained_start" / ("quick" if args.quick else "full")
    digits = work / "digits_lt"
    if not digits.is_dir():
        write_digits_lt(digits)
    pretraining = work / f"fmnist_balanced_{per_class}"
    if not pretraining.is_dir():
        write_pretraining_set(pretraining, per_class)
    backbone = work / "pretrained_ce"
    pre = train(
        [
            "ce_resnet32",
            "--data",
            f"imagefolder:{pretraining}?size=28x28&chans=1",
            "--out",
            str(backbone),
            "--epochs",
            str(pre_epochs),
            "--seed",
            "0",
        ]
    )
    from ltzoo.runs import read_config

    cfg = read_config(backbone)["pretrained_cfg"]
    same_input = f"imagefolder:{digits}?size=28x28&chans=1&mean={cfg['mean'][0]:g}&std={cfg['std'][0]:g}"
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    for seed in seeds:
        common = ["--epochs", str(epochs), "--seed", str(seed), "--trainable", "all"]
        scratch = work / f"scratch_seed{seed}"
        runs["scratch"].append(train(["ce_resnet32", "--data", same_input, "--out", str(scratch), *common]))
        init = ["ce_resnet32", "--data", f"imagefolder:{digits}", "--init", str(backbone), *common]
        runs["pretrained"].append(train([*init, "--out", str(work / f"pretrained_seed{seed}")]))
        # the same start at the scratch run's learning rate: is the derived tenth what holds fine-tuning back?
        scratch_lr = next(iter(read_config(scratch)["ltzoo"]["derived"]["lr"]["value"].values()))
        runs[ARMS[2]].append(
            train([*init, "--lr", f"{scratch_lr:g}", "--out", str(work / f"pretrained_full_lr_seed{seed}")])
        )
    report = {
        "quick": args.quick,
        "epochs": epochs,
        "seeds": list(seeds),
        "pretraining": {
            "images_per_class": per_class,
            "epochs": pre_epochs,
            "val_all": pre["val"]["all"],
            "data": "balanced Fashion-MNIST training images outside fmnist_lt's train and val",
        },
        "target": "scikit-learn digits, 28 x 28, long-tailed (imbalance 10), balanced val/test",
        "results": {arm: [{g: run["test"][g] for g in GROUPS} for run in arm_runs] for arm, arm_runs in runs.items()},
    }
    rows = [[arm, *[fmt_mean_std(r[g] for r in report["results"][arm]) for g in GROUPS]] for arm in runs]
    markdown = "\n".join(
        [
            "## Pretrained start against scratch: CE on long-tailed digits (scikit-learn), same recipe and data",
            "",
            f"Test top-1 (%), mean ± std over seeds {list(seeds)}, {epochs} epochs each, with the settings "
            "`ltzoo train --data` derives (fine-tuning takes a tenth of the lr; the third arm fine-tunes at the "
            "scratch run's lr, `--lr`). The pretrained backbone: CE on "
            f"{per_class} balanced Fashion-MNIST images per class outside fmnist_lt ({pre_epochs} epochs, val "
            f"{pre['val']['all']:.1f} %), given as `--init`; the target shares neither images nor classes with it.",
            "",
            markdown_table(["start", *[f"test {g}" for g in GROUPS]], rows),
        ]
    )
    write_results("pretrained_start", report, markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
