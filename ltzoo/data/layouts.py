"""Reading a user's dataset layout into an index of ``(relative path, label)`` per split.

Two layouts:

- ``imagefolder``: ``ROOT/train/<class>/...``, ``ROOT/val/<class>/...`` and optionally
  ``ROOT/test/<class>/...`` (torchvision's ``ImageFolder`` per split: class folders sorted by name,
  images found recursively);
- ``splits``: ``ROOT/*_train.txt``, ``*_val.txt``, ``*_test.txt`` with ``relative/path label`` lines,
  paths relative to ROOT (the ImageNet-LT format).

Class names come from an optional ``ROOT/classes.txt`` (line i names class i), else from the train
folder names (imagefolder) or the label numbers (splits). Every structural problem is an error that
names the file, line or folder; nothing is dropped or renumbered silently, so the class mapping is
exactly what the files say.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ltzoo.data.splitfile import read_split_lines
from ltzoo.errors import BadDataError, DataNotFoundError

SPLITS = ("train", "val", "test")
CLASSES_FILE = "classes.txt"
# torchvision's IMG_EXTENSIONS plus .webp; matched case-insensitively.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class Item:
    path: str  # relative to the dataset root
    label: int
    where: str  # for messages: "FILE:LINE" (split files) or the image path (folders)


@dataclass
class LayoutIndex:
    """The files of each split and the class names, before any image is opened."""

    root: Path
    layout: str  # "imagefolder" or "splits"
    classes: list[str]
    classes_from: str  # "classes.txt", "folders" or "labels"
    items: dict[str, list[Item]]  # "train" always; "val" / "test" only when the data has them
    origin: dict[str, str]  # split -> the folder or file it came from
    ignored_files: list[str] = field(default_factory=list)  # files without an image extension


def read_classes_file(path: Path) -> list[str]:
    """Class names, one per line (line i is class i); blank lines only at the end; no duplicates."""
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names: list[str] = []
    first_line: dict[str, int] = {}
    for line_no, line in enumerate(lines, start=1):
        name = line.strip()
        if not name:
            raise BadDataError(
                f"{path}:{line_no}: empty class name (line i names class i, so a blank line would shift every "
                "later class)"
            )
        if name in first_line:
            raise BadDataError(f"{path}:{line_no}: class {name!r} is already named on line {first_line[name]}")
        first_line[name] = line_no
        names.append(name)
    if not names:
        raise BadDataError(
            f"{path} names no class; write one class name per line, or delete it to use the folder names"
        )
    return names


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


# ----- imagefolder ----------------------------------------------------------------------------------
def read_imagefolder(root: Path) -> LayoutIndex:
    if not root.is_dir():
        raise DataNotFoundError(
            f"imagefolder {root} does not exist; it needs {root}/train/<class>/<images> (and val/, optionally test/)"
        )
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataNotFoundError(
            f"{train_dir} not found: an imagefolder needs train/ with one folder per class "
            f"(and val/, optionally test/); found {sorted(p.name for p in root.iterdir() if _visible(p))}"
        )
    folders = sorted(p.name for p in train_dir.iterdir() if p.is_dir() and _visible(p))
    classes_path = root / CLASSES_FILE
    if classes_path.is_file():
        classes, classes_from = read_classes_file(classes_path), CLASSES_FILE
        unlisted = [name for name in folders if name not in classes]
        if unlisted:
            raise BadDataError(
                f"{train_dir / unlisted[0]} is a class folder not listed in {classes_path}; add "
                f"{unlisted} to it or remove the folder(s)"
            )
        missing = [name for name in classes if name not in folders]
        if missing:
            raise BadDataError(
                f"class {missing[0]!r} of {classes_path} has no folder in {train_dir}; every class needs training "
                f"images (missing: {missing})"
            )
    else:
        classes, classes_from = folders, "folders"
    if not classes:
        raise BadDataError(f"{train_dir} has no class folders; put each class's images in {train_dir}/<class>/")
    label_of = {name: index for index, name in enumerate(classes)}

    items: dict[str, list[Item]] = {}
    origin: dict[str, str] = {}
    ignored: list[str] = []
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        split_items: list[Item] = []
        for entry in sorted(split_dir.iterdir()):
            if not _visible(entry):
                continue
            if not entry.is_dir():
                raise BadDataError(
                    f"{entry} is not inside a class folder; {split}/ must hold one folder per class "
                    f"({split}/<class>/{entry.name})"
                )
            if entry.name not in label_of:
                raise BadDataError(
                    f"{entry}: class {entry.name!r} never appears in train (train classes: {classes}); "
                    "rename the folder to a train class or add training images for it"
                )
            images: list[Path] = []
            for dirpath, dirnames, filenames in os.walk(entry, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for filename in sorted(filenames):
                    path = Path(dirpath) / filename
                    if not _visible(path):
                        continue
                    (images if _is_image(path) else ignored).append(path)  # type: ignore[arg-type]
            if not images:
                raise BadDataError(
                    f"class folder {entry} is empty (no {'/'.join(IMAGE_EXTENSIONS)} files); add images or remove "
                    "the folder (a class is never dropped silently)"
                )
            label = label_of[entry.name]
            split_items.extend(Item(str(p.relative_to(root)), label, str(p)) for p in images)
        items[split] = split_items
        origin[split] = f"{split}/ (one folder per class)"
    return LayoutIndex(root, "imagefolder", classes, classes_from, items, origin, [str(p) for p in ignored])


# ----- split files ----------------------------------------------------------------------------------
def _find_split_file(root: Path, split: str) -> Path | None:
    found = sorted(root.glob(f"*_{split}.txt"))
    if len(found) > 1:
        raise BadDataError(
            f"{root} has several {split} split files {[p.name for p in found]}; keep exactly one *_{split}.txt"
        )
    return found[0] if found else None


def read_split_files(root: Path) -> LayoutIndex:
    if not root.is_dir():
        raise DataNotFoundError(
            f"splits root {root} does not exist; it needs *_train.txt, *_val.txt (optionally *_test.txt)"
        )
    files = {split: _find_split_file(root, split) for split in SPLITS}
    if files["train"] is None:
        raise DataNotFoundError(
            f"no *_train.txt in {root}; a splits root holds NAME_train.txt, NAME_val.txt (optionally "
            "NAME_test.txt) with 'relative/path label' lines, paths relative to the root"
        )
    classes_path = root / CLASSES_FILE
    names = read_classes_file(classes_path) if classes_path.is_file() else None
    lines = {split: read_split_lines(path, len(names) if names else None) for split, path in files.items() if path}

    train_file = files["train"]
    train_labels = {label for _, _, label in lines["train"]}
    if not lines["train"]:
        raise BadDataError(f"{train_file} lists no image")
    num_classes = len(names) if names else max(train_labels) + 1
    empty = [c for c in range(num_classes) if c not in train_labels]
    if empty:
        if names:
            raise BadDataError(
                f"class {empty[0]} ({names[empty[0]]!r}, {classes_path}:{empty[0] + 1}) has no image in {train_file}; "
                f"every class needs training images (classes without any: {empty})"
            )
        top_line = next(n for n, _, label in lines["train"] if label == num_classes - 1)
        raise BadDataError(
            f"{train_file}:{top_line}: label {num_classes - 1} implies classes 0..{num_classes - 1}, but classes "
            f"{empty} have no training image; labels must be 0..C-1 with every class in train (add a classes.txt "
            "to name them)"
        )
    for split in ("val", "test"):
        for line_no, _, label in lines.get(split, []):
            if label >= num_classes:
                raise BadDataError(
                    f"{files[split]}:{line_no}: label {label} never appears in train ({train_file} has classes "
                    f"0..{num_classes - 1})"
                )

    items: dict[str, list[Item]] = {}
    for split, entries in lines.items():
        split_items = []
        for line_no, rel, label in entries:
            where = f"{files[split]}:{line_no}"
            if not (root / rel).is_file():
                raise DataNotFoundError(f"{where}: {root / rel} does not exist (paths are relative to {root})")
            split_items.append(Item(rel, label, where))
        items[split] = split_items
    classes = names or [str(c) for c in range(num_classes)]
    origin = {split: path.name for split, path in files.items() if path}
    return LayoutIndex(root, "splits", classes, CLASSES_FILE if names else "labels", items, origin)


# ----- checks shared by both layouts ----------------------------------------------------------------
def check_no_duplicates(index: LayoutIndex) -> None:
    """A file (after resolving symlinks) may appear once, in one split: a val or test image that is also a
    training image would inflate exactly the numbers the user trusts."""
    seen: dict[str, tuple[str, Item]] = {}
    for split, items in index.items.items():
        for item in items:
            key = os.path.realpath(index.root / item.path)
            if key in seen:
                other_split, other = seen[key]
                where = "twice in " + split if other_split == split else f"in both {other_split} and {split}"
                raise BadDataError(
                    f"{key} is listed {where} ({other.where} and {item.where}); each image must be in exactly one split"
                )
            seen[key] = (split, item)


def read_layout(layout: str, root: Path) -> LayoutIndex:
    readers = {"imagefolder": read_imagefolder, "splits": read_split_files}
    index = readers[layout](root)
    check_no_duplicates(index)
    return index
