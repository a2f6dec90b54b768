"""``ltzoo train --compile``: ``torch.compile`` of the backbone, and compile failures as clear errors.

The backbone's stages are compiled in place (``Module.compile``), not the model object: objectives
call ``forward_features``, ``forward_head`` and, for RSG, the stages one by one, and an in-place
compiled module is compiled whichever of those paths reaches it. The state-dict keys do not change
(``torch.compile(model)`` would prefix them with ``_orig_mod.``), so checkpoints and saved runs are
the same with or without ``--compile``. Losses and training-only modules stay eager.

Compilation happens at the first training step. If it fails, training stops there with a message
that says so and how to go on (``--compile`` is never dropped silently).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from ltzoo.errors import LtzooError
from ltzoo.models.backbones import split_stages


def compile_backbone(model: nn.Module) -> list[nn.Module]:
    """Compile the stem (when it is a submodule of the backbone) and every stage, in place; returns them."""
    backbone = model.backbone
    stem, stages = split_stages(backbone)
    owned = {id(m) for m in backbone.children()}
    targets = ([stem] if id(stem) in owned else []) + list(stages)
    for module in targets:
        module.compile()
    return targets


@contextlib.contextmanager
def compile_errors(enabled: bool) -> Iterator[None]:
    """Turn an exception raised while torch.compile builds the graph into an :class:`LtzooError`."""
    if not enabled:
        yield
        return
    import torch._dynamo.exc as dynamo_exc

    try:
        yield
    except dynamo_exc.TorchDynamoException as exc:  # BackendCompilerFailed (inductor) is one of these
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LtzooError(
            f"torch.compile failed at the first training step ({type(exc).__name__}: {first_line}). "
            "Training stopped before any update; rerun without --compile (eager is the default and gives the "
            "same results), or see TORCH_LOGS=+dynamo for the full compiler log."
        ) from exc
