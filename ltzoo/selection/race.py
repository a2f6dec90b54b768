"""The race of ``ltzoo select``: every candidate recipe trains on the data, rung by rung, in an Optuna study whose
successive-halving pruner stops the trials that fall behind on val.

- One trial per recipe, enqueued once (``study.enqueue_trial``): workers, here or on other machines sharing the
  storage, each take the next waiting trial, so no recipe runs twice.
- A rung is a fraction of the recipe's full budget (:data:`RUNG_FRACTIONS`, the successive-halving resources
  1, 2, 4 with reduction factor 2). A surviving trial continues from its checkpoint (``Trainer(until_epoch=...)``
  then ``resume``): no step is trained twice.
- A rung's score is the val top-1 of the model there, calibrated as ``ltzoo calibrate --method auto`` would
  (the best of its head as it is, logit adjustment, tau-norm and the nearest class mean of its features): so a
  recipe in a contrastive stage, whose head is not trained yet, is scored by the nearest class mean of its
  features, and every finalist is judged as it will be deployed. Only val is ever scored.
- The storage is a journal file beside the results by default (a killed ``ltzoo select`` resumes: finished
  trials are kept, a trial left running by a dead process on this machine is queued again and resumes from its
  checkpoint), or any Optuna storage URL (``--storage``) that several machines share.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from ltzoo.errors import BadHyperParameterError, LtzooError

log = logging.getLogger("ltzoo.select")

RUNG_FRACTIONS = (1 / 8, 1 / 4, 1 / 2)  # of each recipe's full budget; the winner then trains it all
RUNG_STEPS = (1, 2, 4)  # the pruner's resources at those rungs: successive halving, reduction factor 2
REDUCTION_FACTOR = 2
STUDY_NAME = "ltzoo-select"
ENQUEUED = "enqueued"  # the user attribute of a queued recipe's trial (any other trial is a worker's leftover)
JOURNAL_FILE = "study.journal"


@dataclass
class Candidate:
    """A recipe planned on the data: what its trial trains, and at which epochs its rungs are scored."""

    name: str  # the zoo name
    plan: Any  # ltzoo.planner.plan.TrainingPlan
    full_epochs: int
    rung_epochs: list[int] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return self.name.replace(".", "_")


def rung_epochs(full_epochs: int) -> list[int]:
    """The epochs at which a recipe of ``full_epochs`` is scored: each fraction, at least one more than the last."""
    epochs: list[int] = []
    for fraction in RUNG_FRACTIONS:
        epochs.append(max(round(full_epochs * fraction), (epochs[-1] + 1) if epochs else 1))
    if epochs[-1] >= full_epochs:
        raise BadHyperParameterError(
            f"a budget of {full_epochs} epochs is too short to race in {len(RUNG_FRACTIONS)} rungs: give --epochs of "
            f"at least {len(RUNG_FRACTIONS) * 2 + 1}"
        )
    return epochs


def open_storage(url: str | None, out: Path) -> Any:
    """The study's storage: a journal file in ``out`` (default), a journal file named by path, or an RDB URL."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    try:
        if url is None:
            out.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(out / JOURNAL_FILE)))
        if "://" in url:
            return RDBStorage(url)
        path = Path(url).expanduser()
        if not path.parent.is_dir():
            raise FileNotFoundError(f"no folder {path.parent}")
        return JournalStorage(JournalFileBackend(str(path)))
    except Exception as error:  # Optuna and SQLAlchemy raise many types for an unusable storage
        raise LtzooError(
            f"--storage {url}: cannot open it ({type(error).__name__}: {str(error).splitlines()[0][:200]}); give a "
            "journal file in an existing folder (shared by every machine) or a database URL such as "
            "sqlite:///path/study.db or postgresql://user@host/db"
        ) from None


def create_study(storage: Any, names: list[str]) -> optuna.Study:
    """The race's study, created once; every recipe not raced yet is queued once (a rerun adds nothing twice)."""
    pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=RUNG_STEPS[0], reduction_factor=REDUCTION_FACTOR, min_early_stopping_rate=0
    )
    return queued_study(storage, STUDY_NAME, [{"recipe": name} for name in names], pruner)


def queued_study(storage: Any, name: str, params: list[dict[str, Any]], pruner: Any = None) -> optuna.Study:
    """A study in which every entry of ``params`` is a trial queued once (``enqueue_trial(skip_if_exists=True)``):
    workers, in processes or on machines sharing the storage, take the waiting trials one at a time, so nothing
    runs twice. The race queues its recipes this way, and :mod:`ltzoo.selection.jobs` any list of jobs."""
    study = optuna.create_study(
        study_name=name, storage=storage, direction="maximize", pruner=pruner, load_if_exists=True
    )
    for fixed in params:
        study.enqueue_trial(fixed, user_attrs={ENQUEUED: True}, skip_if_exists=True)
    return study


def claim_queued_trial(trial: optuna.Trial) -> None:
    """Mark ``trial`` as this process's (host and pid: :func:`requeue_dead_trials` reads them), or prune it when it
    is not a queued one: another worker took the last waiting trial before this one started."""
    if not trial.user_attrs.get(ENQUEUED):
        trial.set_user_attr("leftover", True)
        raise optuna.TrialPruned("nothing left in the queue")
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())


def requeue_dead_trials(study: optuna.Study) -> list[dict[str, Any]]:
    """Trials left RUNNING by a process of this machine that no longer exists (``kill -9``, a crash): failed and
    queued again with the same parameters, so the next worker resumes them. Returns their parameters."""
    requeued = []
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial.user_attrs.get("host") != host or _alive(int(trial.user_attrs.get("pid", -1))):
            continue
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        params = dict(trial.system_attrs.get("fixed_params") or trial.params)
        study.enqueue_trial(params, user_attrs={ENQUEUED: True})
        requeued.append(params)
    return requeued


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def waiting(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
