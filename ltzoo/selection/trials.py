"""A trial of the race: one recipe trained rung by rung in its own run folder, each rung scored on val.

:class:`Race` holds what every worker needs (the candidates, where the trial runs go, the seed, how a rung is
scored) and is what a worker process runs: :meth:`Race.work` takes the study's waiting trials one at a time
until none is left or the deadline has passed.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from ltzoo.selection import shared
from ltzoo.selection.race import (
    RUNG_STEPS,
    Candidate,
    claim_queued_trial,
    create_study,
    open_storage,
    requeue_dead_trials,
    waiting,
)

log = logging.getLogger("ltzoo.select")

# (model, candidate) -> (val top-1 at the rung, how it was scored)
RungScorer = Callable[[Any, Candidate], tuple[float, str]]


def calibrated_val_score(model: Any, candidate: Candidate) -> tuple[float, str]:
    """The val top-1 the model reaches calibrated on val (``ltzoo calibrate --method auto``): its head as it is,
    logit adjustment, tau-norm or the nearest class mean of its features, whichever val prefers."""
    from ltzoo.calibration.job import CalibrationOptions, calibrate_model

    recipe = candidate.plan.recipe
    config = {"ltzoo": {"head": dict(recipe.head), "recipe": recipe.to_dict()}}
    result = calibrate_model(model, config, candidate.plan.data, CalibrationOptions(method="auto"))
    chosen = result.choice.chosen
    return float(chosen.val["all"]), chosen.label


@dataclass
class Race:
    candidates: dict[str, Candidate]
    trial_root: Path
    storage_url: str | None
    out: Path
    seed: int = 0
    deadline: float | None = None  # time.time() after which no new trial starts
    score: RungScorer = calibrated_val_score
    train_options: dict[str, Any] | None = None  # extra Trainer options (e.g. steps_per_epoch in tests)

    def study(self) -> optuna.Study:
        return create_study(open_storage(self.storage_url, self.out), sorted(self.candidates))

    def work(self) -> int:
        """Run waiting trials until none is left (or the deadline passed); returns how many this worker ran."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = self.study()
        ran = 0
        # A trial that a dead process of this machine left running is queued again (and resumes its checkpoint),
        # at the start and whenever the queue runs dry: a survivor finishes the race of a killed worker.
        while (waiting(study) or requeue_dead_trials(study)) and (self.deadline is None or time.time() < self.deadline):
            study.optimize(self.objective, n_trials=1, catch=())
            ran += 1
        return ran

    def run_dir(self, candidate: Candidate) -> Path:
        return self.trial_root / candidate.slug

    def objective(self, trial: optuna.Trial) -> float:
        claim_queued_trial(trial)
        name = trial.suggest_categorical("recipe", sorted(self.candidates))
        candidate = self.candidates[name]
        score = float("nan")
        for step, epochs in zip(RUNG_STEPS, candidate.rung_epochs):
            model, trained_by = self.train_to(candidate, epochs)
            score, how = self.score(model, candidate)
            rung = {"epochs": epochs, "val_all": score, "scored_as": how}
            if trained_by is not None:
                rung["trained_by"] = trained_by  # that recipe's identical run, continued: trained once
            trial.set_user_attr(f"rung_{step}", rung)
            log.info(
                "%s: rung %d (%d of %d epochs): val %.2f (%s)", name, step, epochs, candidate.full_epochs, score, how
            )
            trial.report(score, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"val {score:.2f} at rung {step} is below the rung's top 1/2")
        return score

    def train_to(self, candidate: Candidate, epochs: int) -> tuple[Any, str | None]:
        """Train the candidate's run up to ``epochs`` of its recipe, resuming its checkpoint, or adopting another
        recipe's identical run there (:mod:`ltzoo.selection.shared`); returns the model, and the recipe whose
        trial trained it when it was adopted."""
        from ltzoo.engine.trainer import Trainer
        from ltzoo.names import CHECKPOINT_DIR, LAST_CHECKPOINT

        plan, out = candidate.plan, self.run_dir(candidate)
        keys = shared.stage_keys(candidate, self.seed, self.train_options)
        shared_root = self.trial_root / shared.SHARED_DIR
        adopted_from = shared.adopt(keys, out, shared_root, shared.run_recipe(candidate, self.seed), epochs)
        if shared.epochs_done(out) >= epochs:  # adopted, or trained there before a restart: nothing to train
            return self._model_at_checkpoint(candidate, out), adopted_from
        resume = (out / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file()
        trainer = Trainer(
            plan.recipe,
            out,
            name=plan.name,
            data=plan.data,
            model=None if resume or plan.model is None else copy.deepcopy(plan.model),
            extra_config=plan.extra_config,
            epochs=plan.epochs,
            resume=resume,
            seed=self.seed,
            until_epoch=epochs,
            **(self.train_options or {}),
        )
        trainer.run()
        shared.keep(keys, out, shared_root, candidate.name)
        return trainer.model, adopted_from

    def _model_at_checkpoint(self, candidate: Candidate, out: Path) -> Any:
        import torch

        from ltzoo.models.classifier import build_model
        from ltzoo.names import CHECKPOINT_DIR, LAST_CHECKPOINT

        recipe, data = candidate.plan.recipe, candidate.plan.data
        model = build_model(recipe.arch, data.num_classes, in_chans=data.info.in_chans, head=recipe.head)
        state = torch.load(out / CHECKPOINT_DIR / LAST_CHECKPOINT, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        return model
