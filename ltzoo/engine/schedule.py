"""Learning-rate schedules: per-step linear warmup, then cosine, per-epoch cosine, step or constant.

``"cosine"`` decays every step, from the stage's lr at the end of warmup to 0 at the end of the stage.
``"cosine_epoch"`` is the official weight-balancing stepping (ShadeAlsha/LTR-weight-balancing
``utils/trainval.py``): ``CosineAnnealingLR(T_max=epochs)`` stepped once per epoch *before* that
epoch's training, so the lr is constant within an epoch and epoch e (0-indexed) runs at
``0.5 (1 + cos(pi (e + 1) / epochs))``: the first epoch is already decayed and the last runs at lr 0
(a 10-epoch stage trains for 9 effective epochs). With warmup (the official code has none), epoch
and span count from the end of warmup: ``(e + 1 - warmup) / (epochs - warmup)``.
"""

from __future__ import annotations

import math

from ltzoo.recipe import StageConfig


def lr_factor(stage: StageConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Multiplier of ``stage.lr`` at (0-indexed) ``epoch`` and ``step`` within it."""
    progress = epoch + step / max(steps_per_epoch, 1)  # fractional epochs done before this step
    if stage.warmup_epochs > 0 and progress < stage.warmup_epochs:
        return (epoch * steps_per_epoch + step + 1) / (stage.warmup_epochs * steps_per_epoch)
    if stage.schedule == "cosine":
        span = max(stage.epochs - stage.warmup_epochs, 1e-8)
        return 0.5 * (1.0 + math.cos(math.pi * min((progress - stage.warmup_epochs) / span, 1.0)))
    if stage.schedule == "cosine_epoch":
        span = max(stage.epochs - stage.warmup_epochs, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min((epoch + 1 - stage.warmup_epochs) / span, 1.0)))
    if stage.schedule == "step":
        return stage.gamma ** sum(1 for m in stage.milestones if epoch >= m)
    return 1.0
