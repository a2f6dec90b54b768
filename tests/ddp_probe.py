"""Run ``ltzoo train`` under torchrun and record what each process saw and computed (for tests/test_ddp.py).

    torchrun --nproc_per_node 2 tests/ddp_probe.py RECORD_DIR NAME [ltzoo train options]

It is the real command (``ltzoo.cli.main(["train", NAME, ...])``, process group and all); the only
addition is a recording wrapper around every method's objective (what the trainer's ``get_method``
returns here). Process R writes ``RECORD_DIR/rank{R}.pt`` with, for the first stage:

- ``step1``: the batch, the model's and the objective's state and the torch RNG state as the first
  ``training_step`` received them, this process's own loss, and every gradient after the backward
  (read in ``after_optimizer_step``: the gradient the optimizer stepped with);
- ``step2``: the objective's state when the second step starts (e.g. the queue after step 1);
- ``last``: every trainable parameter after the last optimizer step of the run;
- ``epoch_end``: the model's state (BN running statistics included) when the stage's last epoch
  ended (``on_epoch_end``), which is what val is evaluated and the checkpoint written with.

With ``LTZOO_PROBE_NAN=R:E`` in the environment, process R's loss becomes NaN from (0-indexed) epoch
E of the first stage on, while the other processes' losses stay finite.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

import ltzoo.engine.trainer
from ltzoo.cli import main
from ltzoo.engine.objective import get_method

records: dict[str, Any] = {}
nan_from = tuple(int(x) for x in os.environ["LTZOO_PROBE_NAN"].split(":")) if "LTZOO_PROBE_NAN" in os.environ else None


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _trainable(model: torch.nn.Module, objective: torch.nn.Module) -> dict[str, torch.Tensor]:
    named = [("model." + k, p) for k, p in model.named_parameters()]
    named += [("objective." + k, p) for k, p in objective.named_parameters()]
    return {k: p for k, p in named if p.requires_grad}


def _recording(factory):
    def build(model, ctx):
        objective = factory(model, ctx)
        if ctx.stage_index != 0:
            return objective
        step_fn, after_fn, epoch_end_fn = (
            objective.training_step,
            objective.after_optimizer_step,
            objective.on_epoch_end,
        )
        calls = {"steps": 0}

        def training_step(batch: Any, epoch: int):
            calls["steps"] += 1
            if calls["steps"] == 1:
                records["step1"] = {
                    "batch": batch,
                    "model": _state(model),
                    "objective": _state(objective),
                    "rng": torch.get_rng_state(),
                }
            elif calls["steps"] == 2:
                records["step2"] = {"objective": _state(objective)}
            out = step_fn(batch, epoch)
            if nan_from is not None and nan_from[0] == ctx.rank and epoch >= nan_from[1]:
                out.loss = out.loss * float("nan")
            if calls["steps"] == 1:
                records["step1"]["loss"] = out.loss.item()
            return out

        def after_optimizer_step() -> None:
            params = _trainable(model, objective)
            if calls["steps"] == 1:
                records["step1"]["grads"] = {
                    k: p.grad.detach().clone() for k, p in params.items() if p.grad is not None
                }
            records["last"] = {k: p.detach().clone() for k, p in params.items()}
            after_fn()

        def on_epoch_end(epoch: int) -> None:
            records["epoch_end"] = _state(model)
            epoch_end_fn(epoch)

        objective.training_step = training_step
        objective.after_optimizer_step = after_optimizer_step
        objective.on_epoch_end = on_epoch_end
        return objective

    return build


if __name__ == "__main__":
    record_dir = Path(sys.argv[1])
    # The trainer looks every method up through get_method: it gets the recording wrapper instead.
    ltzoo.engine.trainer.get_method = lambda method: _recording(get_method(method))
    rank = int(os.environ.get("RANK", "0"))
    code = main(["train", *sys.argv[2:]])
    record_dir.mkdir(parents=True, exist_ok=True)
    torch.save(records, record_dir / f"rank{rank}.pt")
    sys.exit(code)
