"""Datasets given as ``relative/path label`` split files under a root (ImageNet-LT, Places-LT, iNat 2018)."""

from __future__ import annotations

import os
from pathlib import Path

from ltzoo.data.datasets import FileImageDataset, LTDataset, index_sha256
from ltzoo.data.spec import dataset_spec
from ltzoo.errors import BadDataError, DataNotFoundError

# Split-file names used by classifier-balancing / OLTR. iNat 2018 has no separate test list: by the
# field's convention its val list is reported as test, and ltzoo says so in the dataset's source.
SPLIT_FILES = {
    "imagenet_lt": ("ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "ImageNet_LT_test.txt"),
    "places_lt": ("Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt"),
    "inat2018": ("iNaturalist18_train.txt", "iNaturalist18_val.txt", "iNaturalist18_val.txt"),
}


def read_split_lines(path: Path, num_classes: int | None = None) -> list[tuple[int, str, int]]:
    """``(line number, relative path, label)`` of each non-blank ``relative/path label`` line;
    errors name the file and line."""
    if not path.is_file():
        raise DataNotFoundError(f"split file {path} not found")
    entries: list[tuple[int, str, int]] = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise BadDataError(f"{path}:{line_no}: expected 'relative/path label', got {line!r}")
        try:
            label = int(parts[1])
        except ValueError:
            raise BadDataError(f"{path}:{line_no}: label {parts[1]!r} is not an integer") from None
        if label < 0 or (num_classes is not None and label >= num_classes):
            valid = "labels must be >= 0" if num_classes is None else f"labels must be in [0, {num_classes})"
            raise BadDataError(f"{path}:{line_no}: label {label} is out of range ({valid})")
        entries.append((line_no, parts[0], label))
    return entries


def read_split_file(path: Path, num_classes: int | None = None) -> tuple[list[str], list[int]]:
    """Parse ``relative/path label`` lines; errors name the file and line."""
    entries = read_split_lines(path, num_classes)
    return [p for _, p, _ in entries], [y for _, _, y in entries]


def build_split_file_dataset(name: str, root: str | os.PathLike[str] | None) -> LTDataset:
    root = root or os.environ.get("LTZOO_DATA")
    train_file, val_file, test_file = SPLIT_FILES[name]
    if root is None or not (Path(root) / train_file).is_file():
        raise DataNotFoundError(
            f"{name} needs --data-root pointing at a folder with {train_file}, {val_file}"
            f"{'' if test_file == val_file else ', ' + test_file} and the images they list (got {root})."
        )
    root = Path(root)
    spec = dataset_spec(name)
    splits = {
        s: read_split_file(root / f, spec.num_classes) for s, f in zip(("train", "val", "test"), SPLIT_FILES[name])
    }
    datasets = {s: FileImageDataset(root, p, y) for s, (p, y) in splits.items()}
    return LTDataset(
        name=name,
        train=datasets["train"],
        val=datasets["val"],
        test=datasets["test"],
        label_names=[str(i) for i in range(spec.num_classes)],
        info=spec,
        index_sha256=index_sha256({s: sorted(zip(p, y)) for s, (p, y) in splits.items()}),
        source={
            "root": str(root),
            "split_files": list(SPLIT_FILES[name]),
            "note": "iNat 2018 reports on its val list (no separate test list)" if name == "inat2018" else "",
        },
    )
