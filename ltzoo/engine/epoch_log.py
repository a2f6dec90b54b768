"""The per-epoch line ``ltzoo train`` prints: human-readable by default, the JSON of train_log.jsonl
with ``--log-format json``."""

from __future__ import annotations

from typing import Any

EPOCH_LOG_FORMATS = ("text", "json")
GROUPS = ("all", "many", "medium", "few")
# The objective's own terms (dscl, pbsd, ...) are shown after the loss; bookkeeping keys are not.
_SHOWN_ELSEWHERE = {"stage", "epoch", "step", "loss", "lr", "images_per_s", "new_best", *(f"val_{g}" for g in GROUPS)}


def format_epoch_line(line: dict[str, Any], stage_epochs: int) -> str:
    """``stage 3/30  loss 1.2345 (ce 1.2)  lr 0.0412  512 img/s  val 71.20 | many 80.10 ...  * new best``."""
    parts = [f"{line['stage']} {line['epoch']}/{stage_epochs}", f"loss {line['loss']:.4f}"]
    terms = [f"{k} {v:.4g}" for k, v in line.items() if k not in _SHOWN_ELSEWHERE and isinstance(v, (int, float))]
    if terms:
        parts[-1] += f" ({', '.join(terms)})"
    parts += [f"lr {line['lr']:.4g}", f"{line['images_per_s']:.0f} img/s"]
    if "val_all" in line:
        groups = " ".join(f"{g} {line[f'val_{g}']:.2f}" for g in GROUPS[1:] if line.get(f"val_{g}") is not None)
        parts.append(f"val {line['val_all']:.2f} | {groups}")
    if line.get("new_best"):
        parts.append("* new best")
    return "  ".join(parts)
