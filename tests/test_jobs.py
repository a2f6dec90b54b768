"""The one way ltzoo runs trials outside the race (``ltzoo.selection.jobs``, which ``benchmarks.common.run_jobs``
uses): every job once, results in order, across worker processes; a kept journal makes a rerun skip what finished;
a failed job is an error, not a missing row."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ltzoo.errors import LtzooError
from ltzoo.selection.jobs import run_jobs


def record_call(folder: str, index: int) -> dict[str, int]:
    """A job: leaves one file per call (so calls can be counted) and returns which process ran it."""
    marker = Path(folder) / f"{index}.{os.getpid()}"
    marker.write_text("")
    return {"index": index, "pid": os.getpid()}


def fail_on_two(index: int) -> int:
    if index == 2:
        raise ValueError("job 2 fails")
    return index


def test_two_workers_run_every_job_once_and_return_results_in_order(tmp_path):
    results = run_jobs(record_call, [(str(tmp_path), i) for i in range(6)], workers=2)
    assert [r["index"] for r in results] == list(range(6))
    calls = sorted(p.name.split(".")[0] for p in tmp_path.iterdir())
    assert calls == [str(i) for i in range(6)]  # each exactly once
    assert os.getpid() not in {r["pid"] for r in results}  # in worker processes, not here


def test_a_kept_journal_skips_the_finished_jobs_on_a_rerun(tmp_path):
    journal = tmp_path / "jobs.journal"
    marks = tmp_path / "marks"
    marks.mkdir()
    first = run_jobs(record_call, [(str(marks), i) for i in range(3)], workers=1, journal=journal)
    again = run_jobs(record_call, [(str(marks), i) for i in range(3)], workers=1, journal=journal)
    assert again == first and len(list(marks.iterdir())) == 3  # nothing ran twice


def test_a_failed_job_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="job 2 fails"):
        run_jobs(fail_on_two, [(i,) for i in range(4)], workers=1)
    with pytest.raises(LtzooError, match=r"jobs \[2\] did not finish"):
        run_jobs(fail_on_two, [(i,) for i in range(4)], workers=2)
