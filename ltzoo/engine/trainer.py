"""The trainer: runs a recipe's stages, checkpoints atomically every epoch, resumes, selects on val.

Determinism is what makes resume exact: sampler order comes from (seed, stage, epoch); the global
torch RNG (augmentation) is saved in every checkpoint, so a killed run resumed from its last
checkpoint ends where an uninterrupted run with the same seed ends.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import ltzoo
from ltzoo.data import LTDataset, build_dataset
from ltzoo.data.datasets import TransformedDataset
from ltzoo.data.samplers import LongTailSampler
from ltzoo.engine import distributed
from ltzoo.engine.evaluator import TorchPredictor, evaluate_split
from ltzoo.engine.objective import METHODS, Objective, StageContext
from ltzoo.engine.schedule import lr_factor, scale_stages
from ltzoo.errors import BadHyperParameterError, LtzooError, NonFiniteLossError
from ltzoo.models import LTClassifier, build_model
from ltzoo.recipes.base import Recipe, StageConfig
from ltzoo.runs import atomic_save_state_dict, atomic_torch_save, build_config, load_state_dict_file, save_run

log = logging.getLogger("ltzoo.train")

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_WEIGHTS = "best.safetensors"
TRAIN_LOG = "train_log.jsonl"


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


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
    ) -> None:
        if seed is not None:
            recipe = recipe.replace(seed=seed)
        if epochs is not None:
            if epochs < 1:
                raise BadHyperParameterError(f"--epochs must be >= 1, got {epochs}")
            recipe = recipe.replace(stages=scale_stages(recipe.stages, epochs))
        for option, value in (("max_steps", max_steps), ("steps_per_epoch", steps_per_epoch)):
            if value is not None and value < 1:
                raise BadHyperParameterError(f"--{option.replace('_', '-')} must be >= 1, got {value}")
        if recipe.method not in METHODS:
            raise BadHyperParameterError(f"recipe method {recipe.method!r} has no objective; known: {sorted(METHODS)}")
        self.recipe = recipe
        self.name = name or f"{recipe.method}_{recipe.arch}.{recipe.dataset}"
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / CHECKPOINT_DIR
        self.resume = resume
        self.max_steps = max_steps
        self.steps_cap = steps_per_epoch
        self.device = torch.device(device)
        self.rank = distributed.rank()
        self.world_size = distributed.world_size()
        self.is_main = self.rank == 0
        self.extra_config = extra_config or {}
        self._check_out_dir()
        torch.manual_seed(recipe.seed)
        self.data = data if data is not None else build_dataset(recipe.dataset, data_root)
        self.model = model if model is not None else build_model(
            recipe.arch, self.data.num_classes, in_chans=self.data.info.in_chans, head=recipe.head
        )
        self.model.to(self.device)
        self.best: dict[str, Any] = {}
        self.log_lines: list[dict[str, Any]] = []

    # ----- output directory ---------------------------------------------------------------------
    def _check_out_dir(self) -> None:
        has_ckpt = (self.ckpt_dir / LAST_CHECKPOINT).is_file()
        if self.resume and not has_ckpt:
            log.warning("--resume given but %s has no checkpoint; starting from scratch", self.ckpt_dir)
            self.resume = False
        if not self.resume and (has_ckpt or (self.out_dir / "model.safetensors").is_file()):
            raise LtzooError(
                f"{self.out_dir} already holds a run. Pass --resume to continue it, or choose another --out "
                "(nothing was overwritten)."
            )

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
            return DataLoader(
                TransformedDataset(self.data.train, transform),
                batch_size=stage.batch_size,
                sampler=sampler,
                num_workers=self.recipe.num_workers,
                drop_last=len(sampler) >= stage.batch_size,
            )

        return make_loader

    def _steps_per_epoch(self, stage: StageConfig) -> int:
        per_rank = math.ceil(len(self.data.train) / self.world_size)  # type: ignore[arg-type]
        steps = per_rank // stage.batch_size if per_rank >= stage.batch_size else 1
        return min(steps, self.steps_cap) if self.steps_cap else steps

    def _evaluate_val(self, model: nn.Module) -> dict[str, Any]:
        return evaluate_split(TorchPredictor(model, self.device), self.data, "val")

    # ----- training modes ------------------------------------------------------------------------
    def _set_train_mode(self, stage: StageConfig, objective: Objective) -> None:
        self.model.train()
        objective.train()
        if stage.train == "head":
            # Decoupled classifier stage: the backbone is frozen, BatchNorm statistics included.
            self.model.backbone.eval()

    def _average_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Data parallelism: every rank steps with the gradient averaged over ranks (what DDP computes)."""
        if self.world_size == 1:
            return
        import torch.distributed as dist

        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.world_size

    # ----- checkpoint ----------------------------------------------------------------------------
    def _save_checkpoint(self, stage_index: int, epochs_done: int, objective: Objective,
                         optimizer: torch.optim.Optimizer, global_step: int) -> None:
        if not self.is_main:
            return
        atomic_torch_save(
            {
                "format_version": 1,
                "recipe": self.recipe.to_dict(),
                "stage_index": stage_index,
                "epochs_done": epochs_done,
                "global_step": global_step,
                "model": self.model.state_dict(),
                "objective": objective.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state(),
                "best": self.best,
                "log": self.log_lines,
            },
            self.ckpt_dir / LAST_CHECKPOINT,
        )

    def _load_checkpoint(self) -> dict[str, Any]:
        path = self.ckpt_dir / LAST_CHECKPOINT
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise LtzooError(f"checkpoint {path} is unreadable ({exc}); delete it to start over") from exc
        # Compare both sides as JSON: the checkpoint keeps tuples (milestones) that JSON turns into lists.
        if json.loads(json.dumps(state["recipe"])) != json.loads(json.dumps(self.recipe.to_dict())):
            raise LtzooError(
                f"{path} was written by a different recipe or options (epochs/seed); resume with the same "
                "command, or choose another --out"
            )
        return state

    # ----- the loop ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        start_stage, start_epoch, state = 0, 0, None
        if self.resume:
            state = self._load_checkpoint()
            self.model.load_state_dict(state["model"])
            self.best = state["best"]
            self.log_lines = list(state["log"])
            start_stage, start_epoch = state["stage_index"], state["epochs_done"]
            log.info("resuming %s at stage %d after epoch %d", self.name, start_stage, start_epoch)
        started = time.time()
        for stage_index, stage in enumerate(self.recipe.stages):
            if stage_index < start_stage:
                continue
            self._run_stage(stage_index, stage, start_epoch if stage_index == start_stage else 0,
                            state if stage_index == start_stage else None)
        return self._finish(time.time() - started)

    def _run_stage(self, stage_index: int, stage: StageConfig, first_epoch: int, state: dict[str, Any] | None) -> None:
        steps_per_epoch = self._steps_per_epoch(stage)
        ctx = StageContext(
            recipe=self.recipe, stage=stage, stage_index=stage_index, data=self.data.info,
            steps_per_epoch=steps_per_epoch, device=self.device, rank=self.rank, world_size=self.world_size,
            evaluate_val=self._evaluate_val,
        )
        grad_flags = {name: p.requires_grad for name, p in self.model.named_parameters()}
        if stage.train == "head":
            for p in self.model.backbone.parameters():
                p.requires_grad_(False)
        objective = METHODS[self.recipe.method](self.model, ctx).to(self.device)
        samplers: list[LongTailSampler] = []
        loader = objective.train_loader(self._make_loader_factory(stage, stage_index, samplers))
        optimizer = torch.optim.SGD(
            objective.param_groups(), lr=stage.lr, momentum=stage.momentum,
            weight_decay=stage.weight_decay, nesterov=stage.nesterov,
        )
        for group in optimizer.param_groups:
            group.setdefault("lr_scale", 1.0)
        global_step = 0
        if state is not None:
            objective.load_state_dict(state["objective"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"])
            global_step = state["global_step"]

        for epoch in range(first_epoch, stage.epochs):
            if self.max_steps is not None and global_step >= self.max_steps:
                break
            for sampler in samplers:
                sampler.set_epoch(epoch)
            self._set_train_mode(stage, objective)
            objective.on_epoch_start(epoch)
            epoch_start, loss_sum, seen, logs_sum = time.time(), 0.0, 0, {}
            progress = tqdm(total=steps_per_epoch, desc=f"{stage.name} {epoch + 1}/{stage.epochs}", leave=False,
                            disable=None if self.is_main else True)
            for step, batch in enumerate(loader):
                if step >= steps_per_epoch or (self.max_steps is not None and global_step >= self.max_steps):
                    break
                factor = lr_factor(stage, epoch, step, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = stage.lr * factor * group["lr_scale"]
                out = objective.training_step(_to_device(batch, self.device), epoch)
                if not torch.isfinite(out.loss):
                    raise NonFiniteLossError(
                        f"loss became {out.loss.item()} in stage {stage.name!r}, epoch {epoch + 1}, step {step + 1} "
                        f"(lr {stage.lr * factor:.4g}). Training stopped; the last good checkpoint is kept in "
                        f"{self.ckpt_dir / LAST_CHECKPOINT}. Lower the learning rate (or check the data) and rerun with --resume."
                    )
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                self._average_gradients(optimizer)
                optimizer.step()
                objective.after_optimizer_step()
                global_step += 1
                loss_sum += out.loss.item()
                seen += 1
                for key, value in out.logs.items():
                    logs_sum[key] = logs_sum.get(key, 0.0) + float(value)
                progress.update(1)
                progress.set_postfix(loss=f"{loss_sum / seen:.4f}")
            progress.close()
            objective.on_epoch_end(epoch)
            line: dict[str, Any] = {
                "stage": stage.name, "epoch": epoch + 1, "step": global_step,
                "loss": loss_sum / max(seen, 1), "lr": stage.lr * lr_factor(stage, epoch, max(seen - 1, 0), steps_per_epoch),
                "images_per_s": seen * stage.batch_size * self.world_size / max(time.time() - epoch_start, 1e-9),
                **{k: v / max(seen, 1) for k, v in logs_sum.items()},
            }
            if stage.select_on_val:
                val = self._evaluate_val(self.model)
                line.update({f"val_{k}": val[k] for k in ("all", "many", "medium", "few")})
                if not self.best or val["all"] > self.best["val_all"]:
                    self.best = {"stage": stage.name, "epoch": epoch + 1, "val_all": val["all"]}
                    if self.is_main:
                        atomic_save_state_dict(self.model.state_dict(), self.ckpt_dir / BEST_WEIGHTS)
            self.log_lines.append(line)
            self._save_checkpoint(stage_index, epoch + 1, objective, optimizer, global_step)
            if self.is_main:
                with open(self.out_dir / TRAIN_LOG, "w") as handle:  # rewritten whole: consistent after resume
                    handle.writelines(json.dumps(entry) + "\n" for entry in self.log_lines)
                log.info(json.dumps(line))

        if stage.select_on_val and self.best.get("stage") == stage.name and (self.ckpt_dir / BEST_WEIGHTS).is_file():
            self.model.load_state_dict(load_state_dict_file(self.ckpt_dir / BEST_WEIGHTS))
        objective.finalize()
        for name, p in self.model.named_parameters():
            p.requires_grad_(grad_flags.get(name, True))

    def _finish(self, train_time: float) -> dict[str, Any]:
        self.model.eval()
        predictor = TorchPredictor(self.model, self.device)
        val = evaluate_split(predictor, self.data, "val")
        test = evaluate_split(predictor, self.data, "test")
        summary = {s: {k: r[k] for k in ("all", "many", "medium", "few")} for s, r in (("val", val), ("test", test))}
        metrics = {"name": self.name, "selected": self.best, "train_time_s": train_time, "val": val, "test": test}
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
                    "selected": self.best,
                    "metrics": summary,
                    # A step-capped run is a smoke run, not the recipe's full budget: say so.
                    "training_limits": {"max_steps": self.max_steps, "steps_per_epoch": self.steps_cap},
                    "ltzoo_version": ltzoo.__version__,
                    "torch_version": torch.__version__,
                    **self.extra_config,
                },
            )
            save_run(self.out_dir, self.model, config, metrics)
        return metrics

    def _saved_head_spec(self) -> dict[str, Any]:
        """The head as it is now (a method's finalize may have replaced it, e.g. a logit-adjusted head)."""
        spec = getattr(self.model.head, "config_spec", None)
        return spec() if callable(spec) else dict(self.recipe.head)


def train(recipe: Recipe, out_dir: str | Path, **options: Any) -> dict[str, Any]:
    """Train ``recipe`` into ``out_dir`` (see :class:`Trainer` for the options); returns metrics."""
    return Trainer(recipe, out_dir, **options).run()

