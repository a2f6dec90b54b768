"""The trainer: runs a recipe's stages, checkpoints atomically every epoch, resumes, selects on val.

Determinism is what makes resume exact: sampler order comes from (seed, stage, epoch); the global
torch RNG (augmentation) is saved in every checkpoint, so a killed run resumed from its last
checkpoint ends where an uninterrupted run with the same seed ends.

Data parallelism (``torchrun --nproc_per_node N -m ltzoo train ...``, see ``ltzoo.engine.distributed``):

- a stage's ``batch_size`` is the *global* batch, as in the papers: each of the N processes loads
  ``batch_size / N`` images per step from its shard of the sampler, so steps per epoch, learning
  rate and schedule do not depend on N;
- the model and the objective (whose training-only modules hold trainable parameters too) are wrapped
  together in one ``DistributedDataParallel`` module whose forward is the objective's
  ``training_step``, so DDP averages every gradient the step produced. ``find_unused_parameters``
  is on because some methods leave parameters out of some steps (RSG's generator before
  ``epoch_thresh``, its pair classifier after);
- BatchNorm normalises each process's own micro-batch (SyncBatchNorm runs only on GPUs); DDP
  broadcasts rank 0's buffers (BN running statistics, queues) at every forward, the trainer again
  at every epoch end (so every process evaluates and checkpoints rank 0's model), and rank 0's
  model and objective state at construction and at every epoch start (after ``on_epoch_start``,
  which may re-initialise a head from the RNG);
- each process has its own RNG stream (seed + rank * ``RANK_SEED_STRIDE``; rank 0 keeps the
  one-process stream) so the processes draw different augmentations; every checkpoint keeps every
  process's RNG state;
- the loss is averaged over processes at every step (the logged loss, and a NaN on any process
  stops every process at the same step); val/test metrics come from a sharded evaluation that gives
  every process the same numbers, hence the same best epoch;
- only rank 0 writes files (checkpoints, best weights, train log, the run); the others wait at a
  barrier at the end. On resume every process reads ``--out``, which must therefore be on a
  filesystem all nodes share.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ltzoo.data import LTDataset, build_dataset
from ltzoo.data.datasets import TransformedDataset
from ltzoo.data.samplers import LongTailSampler
from ltzoo.engine import distributed
from ltzoo.engine.compiled import compile_backbone, compile_errors
from ltzoo.engine.epoch_log import EPOCH_LOG_FORMATS, format_epoch_line
from ltzoo.engine.evaluator import TorchPredictor
from ltzoo.engine.objective import Objective, StageContext, StepOutput, get_method
from ltzoo.engine.progress import progress_bar
from ltzoo.engine.schedule import lr_factor
from ltzoo.engine.sharded_eval import evaluate_split_sharded
from ltzoo.errors import BadHyperParameterError, LtzooError, NonFiniteLossError
from ltzoo.fileio import atomic_write_bytes
from ltzoo.memory_format import batch_to, module_to, resolve_channels_last
from ltzoo.models import LTClassifier, build_model
from ltzoo.models.backbones import trained_part
from ltzoo.names import CHECKPOINT_DIR, LAST_CHECKPOINT, MODEL_FILE
from ltzoo.precision import autocast, check_precision, grad_scaler, resolve_precision
from ltzoo.recipe import Recipe, StageConfig, same_recipe, scale_stages
from ltzoo.runs import (
    atomic_save_state_dict,
    atomic_torch_save,
    build_config,
    load_state_dict_file,
    rounded_floats,
    save_run,
)
from ltzoo.version import __version__

log = logging.getLogger("ltzoo.train")


def stage_checkpoint_name(stage: str) -> str:
    """The checkpoint kept at the end of ``stage`` (the state the next stage starts from)."""
    return f"after_{stage}.pt"


BEST_WEIGHTS = "best.safetensors"
TRAIN_LOG = "train_log.jsonl"
# Process r > 0 seeds its RNG with seed + r * stride: streams apart from every other seed's rank 0.
RANK_SEED_STRIDE = 1_000_003


class _TrainingStep(nn.Module):
    """The model and a stage's objective as one module whose forward is ``objective.training_step``.

    This is what ``DistributedDataParallel`` wraps: it sees the model's and the objective's trainable
    parameters (objectives keep the model outside their own module tree), and the forward that DDP
    must run to hook the backward is the whole training step, whatever parts of the model the
    objective calls. It returns ``(loss, logs)``: DDP looks for tensors in a tuple, not a dataclass.
    The step runs in the run's autocast region (bf16/fp16); the losses leave it themselves
    (:func:`ltzoo.precision.full_precision`), so the loss returned is fp32.
    """

    def __init__(self, model: nn.Module, objective: Objective, precision: str, device: torch.device) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.precision = precision
        self.device = device

    def forward(self, batch: Any, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        with autocast(self.precision, self.device):
            out = self.objective.training_step(batch, epoch)
        return out.loss.float(), out.logs


@dataclass
class _StageRun:
    """What a stage holds while it trains: set up by ``Trainer._start_stage``, read by every epoch."""

    stage_index: int
    stage: StageConfig
    steps_per_epoch: int
    grad_flags: dict[str, bool]  # requires_grad before the stage froze anything, restored at its end
    objective: Objective
    step_module: nn.Module
    training_step: Any  # step_module, wrapped for data parallelism when there are several processes
    samplers: list[LongTailSampler]
    loader: Any
    optimizer: torch.optim.Optimizer
    scaler: Any
    global_step: int


class Trainer:
    def __init__(
        self,
        recipe: Recipe,
        out_dir: str | Path,
        *,
        name: str | None = None,
        data: LTDataset | None = None,
        data_root: str | None = None,
        resume: bool = False,
        epochs: int | None = None,
        max_steps: int | None = None,
        steps_per_epoch: int | None = None,
        seed: int | None = None,
        device: str = "cpu",
        model: LTClassifier | None = None,
        extra_config: dict[str, Any] | None = None,
        precision: str | None = None,
        channels_last: str = "auto",
        compile: bool = False,
        log_format: str = "text",
        until_epoch: int | None = None,
    ) -> None:
        if seed is not None:
            recipe = recipe.replace(seed=seed)
        if epochs is not None:
            if epochs < 1:
                raise BadHyperParameterError(f"--epochs must be >= 1, got {epochs}")
            recipe = recipe.replace(stages=scale_stages(recipe.stages, epochs))
        if max_steps is not None and max_steps < 0:  # 0: nothing trains; the initial model is evaluated and saved
            raise BadHyperParameterError(f"--max-steps must be >= 0, got {max_steps}")
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise BadHyperParameterError(f"--steps-per-epoch must be >= 1, got {steps_per_epoch}")
        get_method(recipe.method)  # an unknown method fails here, before any data is read
        self.recipe = recipe
        self.name = name or f"{recipe.method}_{recipe.arch}.{recipe.dataset}"
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / CHECKPOINT_DIR
        self.resume = resume
        self.max_steps = max_steps
        self.steps_cap = steps_per_epoch
        # Stop after this many epochs of the whole recipe (counted over its stages), checkpointed but unfinished:
        # a race (ltzoo select) scores the model there, and --resume continues the same run to the next rung.
        self.until_epoch = until_epoch
        self.device = torch.device(device)
        if log_format not in EPOCH_LOG_FORMATS:
            raise BadHyperParameterError(f"log format {log_format!r} is not one of {list(EPOCH_LOG_FORMATS)}")
        self.log_format = log_format
        # An explicit precision overrides the recipe's (auto by default) for this run only; what the run
        # resolves to is stored in the checkpoint, config.json and metrics.json, and --resume keeps it.
        self.requested_precision = check_precision(precision) if precision is not None else None
        self.precision = resolve_precision(precision or recipe.precision, self.device)
        self.channels_last = resolve_channels_last(channels_last, self.device)
        self.compile = compile
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        self.rank = distributed.rank()
        self.world_size = distributed.world_size()
        self.is_main = self.rank == 0
        self.extra_config = extra_config or {}
        for stage in recipe.stages:
            if stage.batch_size % self.world_size:
                raise BadHyperParameterError(
                    f"stage {stage.name!r}: the global batch of {stage.batch_size} does not split evenly over "
                    f"{self.world_size} processes; start a number of processes that divides it"
                )
        self._check_out_dir()
        # Different augmentation on every process; the model's initial state is rank 0's (DDP syncs it).
        torch.manual_seed(recipe.seed + RANK_SEED_STRIDE * self.rank)
        self.data = data if data is not None else build_dataset(recipe.dataset, data_root)
        self.model = (
            model
            if model is not None
            else build_model(recipe.arch, self.data.num_classes, in_chans=self.data.info.in_chans, head=recipe.head)
        )
        self.model.to(self.device)
        module_to(self.model, self.channels_last)
        if self.compile:
            compile_backbone(self.model)
        self.best: dict[str, Any] = {}
        self.log_lines: list[dict[str, Any]] = []

    # ----- output directory ---------------------------------------------------------------------
    def _check_out_dir(self) -> None:
        # Rank 0 decides and every process follows (a node that cannot see --out fails on resume, not
        # silently from scratch); the same error is raised everywhere.
        decision: dict[str, Any] = {"resume": self.resume, "error": None}
        if self.is_main:
            has_ckpt = (self.ckpt_dir / LAST_CHECKPOINT).is_file()
            if self.resume and not has_ckpt:
                log.warning("--resume given but %s has no checkpoint; starting from scratch", self.ckpt_dir)
                decision["resume"] = False
            if not decision["resume"] and (has_ckpt or (self.out_dir / MODEL_FILE).is_file()):
                decision["error"] = (
                    f"{self.out_dir} already holds a run. Pass --resume to continue it, or choose another --out "
                    "(nothing was overwritten)."
                )
        decision = distributed.broadcast_json(decision)
        if decision["error"]:
            raise LtzooError(decision["error"])
        self.resume = decision["resume"]

    # ----- data ---------------------------------------------------------------------------------
    def _make_loader_factory(self, stage: StageConfig, stage_index: int, samplers: list[LongTailSampler]):
        def make_loader(sampler_kind: str, transform: Callable[[Any], Any]) -> DataLoader:
            # Each loader made in a stage gets its own stream (seed offset), so two loaders drawn in
            # lockstep (ICCL) are independent yet reproducible.
            sampler = LongTailSampler(
                sampler_kind,
                self.data.train.targets,  # type: ignore[attr-defined]
                self.data.num_classes,
                seed=self.recipe.seed * 100 + stage_index * 10 + len(samplers),
                rank=self.rank,
                world_size=self.world_size,
            )
            samplers.append(sampler)
            batch_size = self._rank_batch_size(stage)
            return DataLoader(
                TransformedDataset(self.data.train, transform),
                batch_size=batch_size,
                sampler=sampler,
                num_workers=self.recipe.num_workers,
                drop_last=len(sampler) >= batch_size,
            )

        return make_loader

    def _rank_batch_size(self, stage: StageConfig) -> int:
        """This process's share of the stage's global batch."""
        return stage.batch_size // self.world_size

    def _steps_per_epoch(self, stage: StageConfig) -> int:
        per_rank = math.ceil(len(self.data.train) / self.world_size)  # type: ignore[arg-type]
        batch = self._rank_batch_size(stage)
        steps = per_rank // batch if per_rank >= batch else 1
        return min(steps, self.steps_cap) if self.steps_cap else steps

    def _predictor(self, model: nn.Module) -> TorchPredictor:
        # fp32, in the training layout: per-epoch val and the final report score the same weights the
        # same way (so ``selected.val_all`` is the saved model's val), and ``ltzoo eval`` reproduces it.
        return TorchPredictor(model, self.device, channels_last=self.channels_last)

    def _evaluate_val(self, model: nn.Module) -> dict[str, Any]:
        return evaluate_split_sharded(self._predictor(model), self.data, "val")

    # ----- data parallel -------------------------------------------------------------------------
    def _wrap_for_data_parallel(self, step: _TrainingStep) -> nn.Module:
        if self.world_size == 1:
            return step
        device_ids = None
        if self.device.type == "cuda":
            device_ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()]
        return DistributedDataParallel(step, device_ids=device_ids, find_unused_parameters=True)

    def _reduced_logs(self, logs_sum: dict[str, float], seen: int) -> dict[str, float]:
        """Per-step means of the objective's logs over this epoch, averaged over processes (every process
        must log the same keys, as every objective does: a key per loss term, not per batch content)."""
        keys = sorted(logs_sum)
        if not keys:
            return {}
        means = torch.tensor([logs_sum[k] / max(seen, 1) for k in keys], dtype=torch.float64)
        return dict(zip(keys, distributed.all_reduce_mean(means).tolist(), strict=True))

    # ----- checkpoint ----------------------------------------------------------------------------
    def _save_checkpoint(
        self,
        stage_index: int,
        epochs_done: int,
        objective: Objective,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        global_step: int,
    ) -> None:
        rng_per_rank = distributed.all_gather(torch.get_rng_state())  # every process takes part
        if not self.is_main:
            return
        atomic_torch_save(
            {
                "format_version": 1,
                "world_size": self.world_size,
                "rng_per_rank": rng_per_rank,
                "recipe": self.recipe.to_dict(),
                "stage_index": stage_index,
                "epochs_done": epochs_done,
                "global_step": global_step,
                "model": self.model.state_dict(),
                "objective": objective.state_dict(),
                "optimizer": optimizer.state_dict(),
                "grad_scaler": scaler.state_dict(),
                "precision": self.precision,
                "channels_last": self.channels_last,
                "rng": torch.get_rng_state(),
                "best": self.best,
                "log": self.log_lines,
                "train_time_s": time.time() - self._clock_start,
            },
            self.ckpt_dir / LAST_CHECKPOINT,
        )

    def _load_checkpoint(self) -> dict[str, Any]:
        path = self.ckpt_dir / LAST_CHECKPOINT
        if not path.is_file():  # rank 0 sees it (it decided to resume); this node does not
            raise LtzooError(
                f"process {self.rank} cannot read {path}, which process 0 resumes from: --out must be on a "
                "filesystem that every node shares"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise LtzooError(f"checkpoint {path} is unreadable ({exc}); delete it to start over") from exc
        if not same_recipe(state["recipe"], self.recipe.to_dict()):
            raise LtzooError(
                f"{path} was written by a different recipe or options (epochs/seed); resume with the same "
                "command, or choose another --out"
            )
        return state

    def _restore_rng(self, state: dict[str, Any]) -> None:
        saved_world = state.get("world_size", 1)
        if "rng_per_rank" in state and saved_world == self.world_size:
            torch.set_rng_state(state["rng_per_rank"][self.rank])
        elif saved_world == self.world_size:  # a checkpoint from before per-process RNG states
            torch.set_rng_state(state["rng"])
        else:
            log.warning(
                "the checkpoint was written by %d processes and is resumed by %d: the data order and "
                "augmentation from here on differ from an uninterrupted run",
                saved_world,
                self.world_size,
            )

    def _keep_checkpoint_numerics(self, state: dict[str, Any]) -> None:
        """A resumed run keeps the precision and layout it started with, so that it ends where the
        uninterrupted run ends; asking explicitly for another precision mid-run is an error."""
        saved = state.get("precision", "fp32")  # checkpoints from before mixed precision trained in fp32
        if saved != self.precision:
            if self.requested_precision not in (None, "auto"):
                raise LtzooError(
                    f"{self.ckpt_dir / LAST_CHECKPOINT} was trained in {saved}; --precision {self.requested_precision} "
                    f"would change it mid-run. Resume without --precision (or with --precision {saved}), or start "
                    "another --out."
                )
            self.precision = resolve_precision(saved, self.device)  # fp16 checkpoint on a CPU: a clear error
            log.warning("resuming in %s, the precision this run started with", saved)
        saved_layout = state.get("channels_last", False)
        if saved_layout != self.channels_last:
            self.channels_last = saved_layout
            module_to(self.model, saved_layout)

    # ----- the loop ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        start_stage, start_epoch, state = 0, 0, None
        if self.resume:
            state = self._load_checkpoint()
            self._keep_checkpoint_numerics(state)
            self.model.load_state_dict(state["model"])
            self.best = state["best"]
            self.log_lines = list(state["log"])
            start_stage, start_epoch = state["stage_index"], state["epochs_done"]
            log.info("resuming %s at stage %d after epoch %d", self.name, start_stage, start_epoch)
        # Training time counts across resumes, so a resumed run reports what the whole run cost.
        self._clock_start = time.time() - (state.get("train_time_s", 0.0) if state else 0.0)
        for stage_index, stage in enumerate(self.recipe.stages):
            if stage_index < start_stage:
                continue
            stopped = self._run_stage(
                stage_index,
                stage,
                start_epoch if stage_index == start_stage else 0,
                state if stage_index == start_stage else None,
            )
            if stopped:
                return {"name": self.name, "unfinished": True, "epochs_done": self.until_epoch}
        return self._finish(time.time() - self._clock_start)

    def epochs_before(self, stage_index: int) -> int:
        return sum(stage.epochs for stage in self.recipe.stages[:stage_index])

    def _run_stage(self, stage_index: int, stage: StageConfig, first_epoch: int, state: dict[str, Any] | None) -> bool:
        """One stage: set it up (or restore it), train its epochs, and keep its best epoch. True when the run
        stopped at ``until_epoch`` (the stage then ends when the run is resumed)."""
        run = self._start_stage(stage_index, stage, first_epoch, state)
        for epoch in range(first_epoch, stage.epochs):
            if self.max_steps is not None and run.global_step >= self.max_steps:
                break
            line = self._train_epoch(run, epoch)
            self._end_epoch(run, epoch, line)
            if self.until_epoch is not None and self.epochs_before(stage_index) + epoch + 1 >= self.until_epoch:
                return True
        self._end_stage(run)
        return False

    def _start_stage(
        self, stage_index: int, stage: StageConfig, first_epoch: int, state: dict[str, Any] | None
    ) -> _StageRun:
        """The stage's objective, loader, optimiser and scaler, with a resumed stage's state restored."""
        steps_per_epoch = self._steps_per_epoch(stage)
        ctx = StageContext(
            recipe=self.recipe,
            stage=stage,
            stage_index=stage_index,
            data=self.data.info,
            steps_per_epoch=steps_per_epoch,
            device=self.device,
            rank=self.rank,
            world_size=self.world_size,
            evaluate_val=self._evaluate_val,
        )
        grad_flags = {name: p.requires_grad for name, p in self.model.named_parameters()}
        if stage.train != "all":  # head, or last:N: what the stage does not train is frozen
            trained = {id(p) for module in trained_part(self.model.backbone, stage.train) for p in module.parameters()}
            for p in self.model.backbone.parameters():
                if id(p) not in trained:
                    p.requires_grad_(False)
        objective = get_method(self.recipe.method)(self.model, ctx).to(self.device)
        module_to(objective, self.channels_last)
        step_module = _TrainingStep(self.model, objective, self.precision, self.device)
        samplers: list[LongTailSampler] = []
        loader = objective.train_loader(self._make_loader_factory(stage, stage_index, samplers))
        optimizer = torch.optim.SGD(
            objective.param_groups(),
            lr=stage.lr,
            momentum=stage.momentum,
            weight_decay=stage.weight_decay,
            nesterov=stage.nesterov,
        )
        for group in optimizer.param_groups:
            group.setdefault("lr_scale", 1.0)
        scaler = grad_scaler(self.precision, self.device)
        global_step = 0
        if stage.select_on_val and first_epoch == 0:
            # Selection restarts in every stage that selects: a later stage's epochs are never compared
            # with an earlier stage's best, and the saved model is the best of the last selecting stage.
            self.best = {}
        if state is not None:
            objective.load_state_dict(state["objective"])
            optimizer.load_state_dict(state["optimizer"])
            if "grad_scaler" in state:
                scaler.load_state_dict(state["grad_scaler"])
            self._restore_rng(state)
            global_step = state["global_step"]
        # Built after the resumed state is loaded: DDP starts every process from rank 0's state.
        training_step = self._wrap_for_data_parallel(step_module)
        return _StageRun(
            stage_index,
            stage,
            steps_per_epoch,
            grad_flags,
            objective,
            step_module,
            training_step,
            samplers,
            loader,
            optimizer,
            scaler,
            global_step,
        )

    def _train_epoch(self, run: _StageRun, epoch: int) -> dict[str, Any]:
        """The optimiser steps of one epoch; returns its log line (loss, lr, images/s, the objective's terms)."""
        stage, steps_per_epoch = run.stage, run.steps_per_epoch
        for sampler in run.samplers:
            sampler.set_epoch(epoch)
        run.objective.set_train_mode()
        run.objective.on_epoch_start(epoch)
        distributed.broadcast_module_state(run.step_module)  # e.g. a head re-initialised from each process's RNG
        epoch_start, loss_sum, seen, logs_sum = time.time(), 0.0, 0, {}
        progress = progress_bar(
            total=steps_per_epoch, desc=f"{stage.name} {epoch + 1}/{stage.epochs}", enabled=self.is_main
        )
        for step, batch in enumerate(run.loader):
            if step >= steps_per_epoch or (self.max_steps is not None and run.global_step >= self.max_steps):
                break
            loss_value, logs = self._step(run, epoch, step, batch)
            loss_sum += loss_value
            seen += 1
            for key, value in logs.items():
                logs_sum[key] = logs_sum.get(key, 0.0) + float(value)
            progress.update(1)
            progress.set_postfix(loss=f"{loss_sum / seen:.4f}")
        progress.close()
        # BN running statistics moved with each process's last batch: rank 0's, as saved, go to
        # every process, so the sharded val evaluation scores the checkpointed model.
        distributed.broadcast_module_state(run.step_module, parameters=False)
        run.objective.on_epoch_end(epoch)
        return {
            "stage": stage.name,
            "epoch": epoch + 1,
            "step": run.global_step,
            "loss": loss_sum / max(seen, 1),
            "lr": stage.lr * lr_factor(stage, epoch, max(seen - 1, 0), steps_per_epoch),
            "images_per_s": seen * stage.batch_size / max(time.time() - epoch_start, 1e-9),
            **self._reduced_logs(logs_sum, seen),
        }

    def _step(self, run: _StageRun, epoch: int, step: int, batch: Any) -> tuple[float, dict[str, Any]]:
        """One optimiser step; returns the loss (mean over processes) and the objective's logged terms."""
        stage = run.stage
        factor = lr_factor(stage, epoch, step, run.steps_per_epoch)
        for group in run.optimizer.param_groups:
            group["lr"] = stage.lr * factor * group["lr_scale"]
        with compile_errors(enabled=self.compile and run.global_step == 0):
            out = StepOutput(*run.training_step(batch_to(batch, self.device, self.channels_last), epoch))
        # The mean over processes: what is logged, and a NaN anywhere stops every process here.
        loss_value = distributed.all_reduce_mean(out.loss).item()
        if not math.isfinite(loss_value):
            where = f" (mean over {self.world_size} processes)" if self.world_size > 1 else ""
            raise NonFiniteLossError(
                f"loss became {loss_value}{where} in stage {stage.name!r}, epoch {epoch + 1}, step {step + 1} "
                f"(lr {stage.lr * factor:.4g}). Training stopped; the last good checkpoint is kept in "
                f"{self.ckpt_dir / LAST_CHECKPOINT}. Lower the learning rate (or check the data) and rerun "
                "with --resume."
            )
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(out.loss).backward()  # under DDP: gradients averaged over processes
        run.scaler.step(run.optimizer)  # fp16: skipped when a gradient overflowed (the scaler then backs off)
        run.scaler.update()
        run.objective.after_optimizer_step()
        run.global_step += 1
        return loss_value, out.logs

    def _end_epoch(self, run: _StageRun, epoch: int, line: dict[str, Any]) -> None:
        """Selection on val, the checkpoint, the log (file and terminal) and the checkpoint between stages."""
        stage = run.stage
        if stage.select_on_val:
            val = self._evaluate_val(self.model)
            line.update({f"val_{k}": val[k] for k in ("all", "many", "medium", "few")})
            if not self.best or val["all"] > self.best["val_all"]:
                self.best = {"stage": stage.name, "epoch": epoch + 1, "val_all": val["all"]}
                line["new_best"] = True
                if self.is_main:
                    atomic_save_state_dict(self.model.state_dict(), self.ckpt_dir / BEST_WEIGHTS)
        self.log_lines.append(line)
        self._save_checkpoint(run.stage_index, epoch + 1, run.objective, run.optimizer, run.scaler, run.global_step)
        if not self.is_main:
            return
        atomic_write_bytes(
            self.out_dir / TRAIN_LOG,  # rewritten whole: consistent after resume
            "".join(json.dumps(rounded_floats(entry)) + "\n" for entry in self.log_lines).encode(),
        )
        log.info(
            json.dumps(rounded_floats(line)) if self.log_format == "json" else format_epoch_line(line, stage.epochs)
        )
        if epoch + 1 == stage.epochs and run.stage_index + 1 < len(self.recipe.stages):
            # The checkpoint between two stages, kept: a later stage can be re-run from it with other
            # settings of its own (``ltzoo.engine.branch``), without training the earlier stages again.
            atomic_write_bytes(
                self.ckpt_dir / stage_checkpoint_name(stage.name), (self.ckpt_dir / LAST_CHECKPOINT).read_bytes()
            )

    def _end_stage(self, run: _StageRun) -> None:
        """Back to the stage's best epoch (when it selects), the objective's last word, the frozen flags undone."""
        stage = run.stage
        if stage.select_on_val and self.best.get("stage") == stage.name:  # always, unless --max-steps cut every epoch
            # Rank 0 wrote the file and reads it back; the others get its weights by broadcast.
            if self.is_main and (self.ckpt_dir / BEST_WEIGHTS).is_file():
                self.model.load_state_dict(load_state_dict_file(self.ckpt_dir / BEST_WEIGHTS))
            distributed.broadcast_module_state(self.model)
        run.objective.finalize()
        for name, p in self.model.named_parameters():
            p.requires_grad_(run.grad_flags.get(name, True))

    def _finish(self, train_time: float) -> dict[str, Any]:
        self.model.eval()
        # The reported numbers are an fp32 evaluation of the weights being saved, whatever the training
        # precision: exactly what ``ltzoo eval`` and ``ltzoo.load`` reproduce.
        predictor = self._predictor(self.model)
        if self.is_main:  # the final evaluation takes a while on a CPU: say what is running
            log.info(
                "evaluating the selected model in fp32 on val (%d images) and test (%d images)",
                len(self.data.split("val")),
                len(self.data.split("test")),
            )
        val = evaluate_split_sharded(predictor, self.data, "val")
        test = evaluate_split_sharded(predictor, self.data, "test")
        summary = {s: {k: r[k] for k in ("all", "many", "medium", "few")} for s, r in (("val", val), ("test", test))}
        selected = self._selected(val)
        metrics = {
            "name": self.name,
            "selected": selected,
            "precision": self.precision,
            "train_time_s": train_time,
            "val": val,
            "test": test,
        }
        if self.is_main:
            config = build_config(
                self.model,
                arch=self.recipe.arch,
                in_chans=self.data.info.in_chans,
                head=self._saved_head_spec(),
                label_names=self.data.label_names,
                data_info=json.loads(json.dumps(self.data.info.to_dict())),
                longtail=self.data.summary(),
                ltzoo_fields={
                    "name": self.name,
                    "method": self.recipe.method,
                    "arch": self.recipe.arch,
                    "recipe": self.recipe.to_dict(),
                    "seed": self.recipe.seed,
                    "selected": selected,
                    "metrics": summary,
                    "precision": self.precision,
                    "channels_last": self.channels_last,
                    "compiled": self.compile,
                    # A step-capped run is a smoke run, not the recipe's full budget: say so.
                    "training_limits": {"max_steps": self.max_steps, "steps_per_epoch": self.steps_cap},
                    "ltzoo_version": __version__,
                    "torch_version": torch.__version__,
                    **self.extra_config,
                },
            )
            save_run(self.out_dir, self.model, config, metrics)
        distributed.barrier()  # when train() returns on any process, the run directory is complete
        return metrics

    def _selected(self, val: dict[str, Any]) -> dict[str, Any]:
        """What the saved model is: the best val epoch of the last selecting stage or, when stages that do
        not select follow it, the last epoch of the run (its val is then the final evaluation's)."""
        if self.recipe.stages[-1].select_on_val or not self.log_lines:
            return dict(self.best)
        last = self.log_lines[-1]
        return {"stage": last["stage"], "epoch": last["epoch"], "val_all": val["all"], "rule": "last epoch"}

    def _saved_head_spec(self) -> dict[str, Any]:
        """The head as it is now (a method's finalize may have replaced it, e.g. a logit-adjusted head)."""
        spec = getattr(self.model.head, "config_spec", None)
        return spec() if callable(spec) else dict(self.recipe.head)


def train(recipe: Recipe, out_dir: str | Path, **options: Any) -> dict[str, Any]:
    """Train ``recipe`` into ``out_dir`` (see :class:`Trainer` for the options); returns metrics."""
    return Trainer(recipe, out_dir, **options).run()
