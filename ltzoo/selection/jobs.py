"""A list of jobs run once each, in worker processes, through an Optuna study: the engine of ``ltzoo select``'s
race, without the pruner. The benchmarks' arms x seeds (``benchmarks.common.run_jobs``) run this way, so there
is one way to run trials in ltzoo.

Each job is a trial queued once (:func:`ltzoo.selection.race.queued_study`, parameter ``job``: its index); a
worker takes a waiting trial, calls ``function(*job)`` and keeps the result (JSON) as the trial's user attribute.
The study lives in a journal file: by default a temporary one, or ``journal`` to keep it, so that a killed run
started again with the same jobs finds the finished ones done and runs only the rest.
"""

from __future__ import annotations

import json
import multiprocessing
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna

from ltzoo.errors import LtzooError
from ltzoo.selection.race import claim_queued_trial, open_storage, queued_study, requeue_dead_trials, waiting

JOBS_STUDY = "ltzoo-jobs"
RESULT = "result"


def run_jobs(
    function: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], workers: int = 1, journal: Path | None = None
) -> list[Any]:
    """``function(*job)`` for every job, each once, ``workers`` at a time (in fresh processes when more than one);
    the results in the order of ``jobs``. ``function`` and the jobs must pickle (module-level function) and the
    results must be JSON: they travel through the study's storage."""
    if journal is None:
        with tempfile.TemporaryDirectory(prefix="ltzoo-jobs-") as folder:
            return run_jobs(function, jobs, workers, Path(folder) / "jobs.journal")
    study = queued_study(_storage(journal), JOBS_STUDY, [{"job": index} for index in range(len(jobs))])
    if workers <= 1:
        _work(function, jobs, journal)
    else:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter each: no forked torch threads
        processes = [context.Process(target=_work, args=(function, jobs, journal)) for _ in range(workers)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    return _results(study, len(jobs))


def _storage(journal: Path) -> Any:
    return open_storage(str(journal), journal.parent)


def _work(function: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], journal: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=JOBS_STUDY, storage=_storage(journal))

    def objective(trial: optuna.Trial) -> float:
        claim_queued_trial(trial)
        index = trial.suggest_int("job", 0, len(jobs) - 1)
        trial.set_user_attr(RESULT, json.loads(json.dumps(function(*jobs[index]))))
        return 0.0

    while waiting(study) or requeue_dead_trials(study):
        study.optimize(objective, n_trials=1, catch=())


def _results(study: optuna.Study, count: int) -> list[Any]:
    done = {
        trial.params["job"]: trial.user_attrs[RESULT]
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    }
    missing = [index for index in range(count) if index not in done]
    if missing:
        raise LtzooError(f"jobs {missing} did not finish (a worker failed: its error is printed above)")
    return [done[index] for index in range(count)]
