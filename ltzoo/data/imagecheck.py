"""Open every image of a user dataset once before training: a corrupt file fails now, naming the file,
instead of hours into a run; and the channel count of the data is read off the image modes.

Each image is fully decoded (JPEGs at reduced scale through ``Image.draft``, which still reads every
entropy-coded byte, so truncation is caught at a fraction of the cost).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ltzoo.data.layouts import Item
from ltzoo.errors import BadDataError

log = logging.getLogger("ltzoo.data")

# Single-channel modes (bilevel, 8/16/32-bit and float grayscale, grayscale + alpha).
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
REPORTED_FILES = 20  # how many skipped files are named in the run's config


def probe_image(path: Path) -> str:
    """Decode ``path`` and return its PIL mode; raises whatever the decoder raises on a bad file."""
    with Image.open(path) as image:
        image.draft(None, (64, 64))  # JPEG only: decode at 1/2..1/8 scale; a no-op for other formats
        image.load()
        if image.width < 1 or image.height < 1:
            raise ValueError(f"image has size {image.size}")
        return image.mode


@dataclass
class ScanResult:
    items: dict[str, list[Item]]  # the readable images of each split
    train_modes: Counter = field(default_factory=Counter)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (split, where, error)

    def skipped_report(self) -> dict[str, Any]:
        return {
            "count": len(self.skipped),
            "by_split": dict(Counter(split for split, _, _ in self.skipped)),
            "files": [f"{where}: {error}" for _, where, error in self.skipped[:REPORTED_FILES]],
        }


def scan_images(root: Path, items: dict[str, list[Item]], skip_bad: bool) -> ScanResult:
    """Decode every listed image. A bad one raises :class:`BadDataError` naming it, unless ``skip_bad``,
    which drops it and counts it (logged, and stored with the run)."""
    result = ScanResult(items={})
    for split, split_items in items.items():
        kept = []
        for item in split_items:
            try:
                mode = probe_image(root / item.path)
            except Exception as exc:  # noqa: BLE001 - image plugins raise OSError, ValueError, SyntaxError, ...
                error = f"{type(exc).__name__}: {exc}"
                if not skip_bad:
                    raise BadDataError(
                        f"cannot read image {root / item.path} ({item.where}): {error}. Fix or delete the file, "
                        "or pass --skip-bad-images to skip unreadable images (they are counted and reported)"
                    ) from exc
                result.skipped.append((split, item.where, error))
                continue
            if split == "train":
                result.train_modes[mode] += 1
            kept.append(item)
        result.items[split] = kept
    if result.skipped:
        log.warning(
            "skipped %d unreadable image(s) (--skip-bad-images): %s%s",
            len(result.skipped),
            "; ".join(f"{where} ({error})" for _, where, error in result.skipped[:5]),
            " ..." if len(result.skipped) > 5 else "",
        )
    return result


def channels_from_modes(modes: Counter) -> int:
    """1 when every training image is single-channel, else 3 (colour and mixed data train in RGB)."""
    return 1 if modes and all(mode in GRAY_MODES for mode in modes) else 3
