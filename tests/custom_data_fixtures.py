"""Small real image datasets on disk, in both user layouts, with an imbalanced profile.

Images are PNG files written with Pillow: each class has its own base brightness plus noise, so they
are real decodable images of a chosen size and mode (RGB, grayscale or 16-bit grayscale).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, size: tuple[int, int], mode: str, level: int, rng: np.random.Generator) -> Path:
    """A (H, W) = ``size`` PNG in ``mode`` ("RGB", "L" or "I;16") around brightness ``level`` (0-255)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = rng.integers(0, 40, size=(*size, 3))
    pixels = np.clip(level + noise, 0, 255).astype(np.uint8)
    if mode == "RGB":
        image = Image.fromarray(pixels)
    elif mode == "L":
        image = Image.fromarray(pixels[..., 0])
    elif mode == "I;16":
        image = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)  # full 16-bit range
    else:
        raise ValueError(mode)
    image.save(path)
    return path


def make_imagefolder(
    root: Path,
    train: Sequence[int],
    val: Sequence[int] | None = None,
    test: Sequence[int] | None = None,
    *,
    size: tuple[int, int] = (20, 24),
    gray_classes: Sequence[int] = (),
    names: Sequence[str] | None = None,
    seed: int = 0,
) -> Path:
    """``root/{train,val,test}/<class>/<i>.png``; classes in ``gray_classes`` are stored as grayscale."""
    rng = np.random.default_rng(seed)
    names = list(names or [f"class_{c}" for c in range(len(train))])
    for split, counts in (("train", train), ("val", val), ("test", test)):
        for cls, count in enumerate(counts or ()):
            mode = "L" if cls in gray_classes else "RGB"
            for i in range(count):
                write_image(root / split / names[cls] / f"{i}.png", size, mode, 45 * cls, rng)
    return root


def make_split_files(
    root: Path,
    train: Sequence[int],
    val: Sequence[int] | None = None,
    test: Sequence[int] | None = None,
    *,
    size: tuple[int, int] = (16, 16),
    mode: str = "L",
    classes: Sequence[str] | None = None,
    prefix: str = "mine",
    seed: int = 1,
) -> Path:
    """``root/images/<split>/c<k>_<i>.png`` and ``root/<prefix>_<split>.txt`` (``images/... label`` lines)."""
    rng = np.random.default_rng(seed)
    for split, counts in (("train", train), ("val", val), ("test", test)):
        if counts is None:
            continue
        lines = []
        for cls, count in enumerate(counts):
            for i in range(count):
                relative = f"images/{split}/c{cls}_{i}.png"
                write_image(root / relative, size, mode, 50 * cls, rng)
                lines.append(f"{relative} {cls}")
        (root / f"{prefix}_{split}.txt").write_text("\n".join(lines) + "\n")
    if classes is not None:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root
