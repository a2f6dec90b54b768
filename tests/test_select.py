"""``ltzoo select`` (issue 29): the race prunes on val and resumes survivors from their checkpoints, two processes
share one journal without running a trial twice (and survive a kill -9 of one), a tiny race ends in a gated
export, and bad input fails before anything is written. Real Optuna studies, real (tiny) training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from custom_data_fixtures import make_imagefolder

from ltzoo.cli import main as ltzoo_main
from ltzoo.selection import shared
from ltzoo.selection.candidates import SelectOptions, make_race, plan_candidates
from ltzoo.selection.leaderboard import rows_of

pytestmark = pytest.mark.usefixtures("single_thread")
RECIPES = (
    "ce_resnet32.fmnist_lt",
    "ldam_drw_resnet32.fmnist_lt",
    "scl_resnet32.fmnist_lt",
    "wb_onestage_resnet32.fmnist_lt",
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_imagefolder(
        tmp_path_factory.mktemp("select") / "parts",
        train=[30, 15, 8, 4],
        val=[4, 4, 4, 4],
        test=[4, 4, 4, 4],
        size=(32, 32),
    )


def _options(folder: Path, out: Path, **changes) -> SelectOptions:
    settings = {"recipes": RECIPES, "epochs": 8, "steps_per_epoch": 1, "winner_seeds": (0,), **changes}
    return SelectOptions(data=f"imagefolder:{folder}", out=out, **settings)


def _select_args(folder: Path, out: Path, recipes: tuple[str, ...], steps_per_epoch: int) -> list[str]:
    """``ltzoo select`` on the tiny folder at 8 epochs of ``steps_per_epoch`` steps."""
    data = ["--data", f"imagefolder:{folder}", "--out", str(out), "--recipes", *recipes]
    return ["select", *data, "--epochs", "8", "--steps-per-epoch", str(steps_per_epoch)]


def _epochs_logged(run: Path) -> list[int]:
    lines = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return [line["step"] for line in lines]


def test_the_pruner_stops_the_trials_behind_and_survivors_resume_without_repeating_a_step(folder, tmp_path):
    # Scripted val curves per recipe and rung; Optuna's successive halving (reduction factor 2) decides in order:
    # ce and ldam_drw lead at every rung, scl is last at rung 1, wb_onestage passes rung 1 but is last at rung 2.
    curves = {
        "ce_resnet32.fmnist_lt": [50, 60, 70],
        "ldam_drw_resnet32.fmnist_lt": [80, 85, 90],
        "scl_resnet32.fmnist_lt": [40, 0, 0],
        "wb_onestage_resnet32.fmnist_lt": [85, 50, 0],
    }
    options = _options(folder, tmp_path / "race")
    candidates = plan_candidates(options)
    race = make_race(options, candidates, None)
    calls = dict.fromkeys(RECIPES, 0)

    def scripted(model, candidate):
        value = curves[candidate.name][calls[candidate.name]]
        calls[candidate.name] += 1
        return float(value), "scripted"

    race.score = scripted
    race.study()
    assert race.work() == 4
    rows = rows_of(race.study())
    reached = {row.recipe: (row.state, row.reached) for row in rows}
    assert reached == {
        "ce_resnet32.fmnist_lt": ("completed the race", 4),
        "ldam_drw_resnet32.fmnist_lt": ("completed the race", 4),
        "scl_resnet32.fmnist_lt": ("pruned", 1),
        "wb_onestage_resnet32.fmnist_lt": ("pruned", 2),
    }
    assert rows[0].recipe == "ldam_drw_resnet32.fmnist_lt"  # the leaderboard is the val order
    # rungs at 1, 2 and 4 of 8 epochs, one step each: a survivor's log holds every step exactly once
    for name, epochs in {
        "ce_resnet32.fmnist_lt": 4,
        "ldam_drw_resnet32.fmnist_lt": 4,
        "scl_resnet32.fmnist_lt": 1,
        "wb_onestage_resnet32.fmnist_lt": 2,
    }.items():
        assert _epochs_logged(race.run_dir(candidates[name])) == list(range(1, epochs + 1)), name


def test_the_budget_probe_times_a_zoo_recipe_at_its_own_budget(tmp_path):
    # the zoo's recipes warm up for 8 epochs: the one-epoch probe must not inherit that
    from ltzoo.selection.job import probe_minutes_per_epoch

    candidates = plan_candidates(SelectOptions(data="fmnist_lt", out=tmp_path / "zoo", recipes=RECIPES[:1]))
    assert candidates[RECIPES[0]].plan.recipe.stages[0].warmup_epochs > 1
    assert 0 < probe_minutes_per_epoch(candidates[RECIPES[0]], steps_per_epoch=2) < 60


def test_recipes_that_share_a_stage_train_it_once_and_exactly(folder, tmp_path):
    # ce_wd is weight balancing's stage 1 alone: with budgets kept in proportion (ce_wd 7 epochs, wb 7 + 1) their
    # runs are one run up to epoch 7, so the race trains ce_wd's and wb adopts it at every rung.
    pair = ("ce_wd_resnet32.fmnist_lt", "wb_resnet32.fmnist_lt")
    options = _options(folder, tmp_path / "race", recipes=pair)
    candidates = plan_candidates(options)
    assert [c.full_epochs for c in candidates.values()] == [7, 8]
    assert candidates[pair[1]].plan.recipe.stages[0] == candidates[pair[0]].plan.recipe.stages[0]
    race = make_race(options, candidates, None)
    race.study()
    assert race.work() == 2
    rows = {row.recipe: row for row in rows_of(race.study())}
    assert [rung.get("trained_by") for rung in rows[pair[1]].rungs.values()] == [pair[0]] * 3
    assert [r["val_all"] for r in rows[pair[1]].rungs.values()] == [r["val_all"] for r in rows[pair[0]].rungs.values()]
    assert _epochs_logged(race.run_dir(candidates[pair[0]])) == [1, 2, 3, 4]
    assert not (race.run_dir(candidates[pair[1]]) / "train_log.jsonl").exists()  # wb trained no step itself
    # at the zoo's own budgets the keys match over wb's stage 1 only, and never CE's (another weight decay)
    zoo = plan_candidates(SelectOptions(data="fmnist_lt", out=tmp_path / "zoo", recipes=(*pair, RECIPES[0])))
    keys = {name: shared.stage_keys(candidate, 0, None) for name, candidate in zoo.items()}
    assert keys[pair[0]] == keys[pair[1]][:1] and keys[pair[1]][1][2] != keys[pair[0]][0][2]
    assert keys[RECIPES[0]][0][2] != keys[pair[0]][0][2]
    # and adopting is exact: wb trained on its own to the last rung ends with the same weights
    from ltzoo.engine.trainer import Trainer

    plan, alone = candidates[pair[1]].plan, tmp_path / "wb_alone"
    Trainer(plan.recipe, alone, data=plan.data, seed=0, until_epoch=4, steps_per_epoch=1).run()
    ours = torch.load(race.run_dir(candidates[pair[1]]) / "checkpoints" / "last.pt", weights_only=True)
    theirs = torch.load(alone / "checkpoints" / "last.pt", weights_only=True)
    assert ours["recipe"] == theirs["recipe"]
    assert all(torch.equal(ours["model"][k], theirs["model"][k]) for k in theirs["model"])
    # the race's wb run goes on to its second stage from the adopted checkpoint, as the winner would
    Trainer(
        plan.recipe, race.run_dir(candidates[pair[1]]), data=plan.data, seed=0, resume=True, steps_per_epoch=1
    ).run()
    lines = (race.run_dir(candidates[pair[1]]) / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["stage"] for line in lines] == ["stage1"] * 7 + ["stage2"]


def test_each_recipe_is_planned_once_at_its_share_of_the_budget_derived_from_the_data(folder, tmp_path, monkeypatch):
    import ltzoo.planner.plan as planner
    from ltzoo.planner.derived import derived_epochs
    from ltzoo.registry import get_entry

    planned = []
    plan_training = planner.plan_training

    def counted(name, **options):
        planned.append(name)
        return plan_training(name, **options)

    monkeypatch.setattr(planner, "plan_training", counted)
    pair = ("ce_wd_resnet32.fmnist_lt", "wb_resnet32.fmnist_lt")  # ce_wd is wb's stage 1 alone: the shorter one
    candidates = plan_candidates(SelectOptions(data=f"imagefolder:{folder}", out=tmp_path / "out", recipes=pair))
    assert sorted(planned) == sorted(pair) and list(candidates) == list(pair)
    budget = derived_epochs(len(candidates[pair[1]].plan.data.train), finetune=False)
    assert candidates[pair[1]].full_epochs == budget and candidates[pair[1]].plan.derived["epochs"]["from"] == "derived"
    native = {name: sum(stage.epochs for stage in get_entry(name).recipe().stages) for name in pair}
    assert native[pair[0]] < native[pair[1]]
    assert candidates[pair[0]].full_epochs == round(budget * native[pair[0]] / native[pair[1]])


@pytest.mark.slow
def test_two_processes_share_one_journal_and_a_kill_loses_nothing(folder, tmp_path):
    out = tmp_path / "shared"
    command = [sys.executable, "-m", "ltzoo", *_select_args(folder, out, RECIPES, 1), "--budget-minutes", "60"]
    command.append("--race-only")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = None
    deadline = time.time() + 600
    while time.time() < deadline:  # kill the first once it is inside a trial
        if (out / "study.journal").is_file():
            from ltzoo.selection.race import open_storage

            storage = storage or open_storage(None, out)
            study = optuna.load_study(study_name="ltzoo-select", storage=storage)
            running = [
                t
                for t in study.get_trials(deepcopy=False)
                if t.user_attrs.get("pid") == first.pid and t.state == optuna.trial.TrialState.RUNNING
            ]
            if running:
                break
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert second.wait(timeout=900) == 0
    study = optuna.load_study(study_name="ltzoo-select", storage=open_storage(None, out))
    finished = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        and not t.user_attrs.get("leftover")
    ]
    assert sorted(t.params["recipe"] for t in finished) == sorted(RECIPES)  # each raced once, none lost
    for name in RECIPES:  # the killed trial resumed its checkpoint: no epoch was trained twice
        logged = _epochs_logged(out / "trials" / name.replace(".", "_"))
        assert logged == list(range(1, len(logged) + 1)), (name, logged)


@pytest.mark.slow
def test_a_tiny_race_ends_in_a_leaderboard_a_winner_and_a_gated_export(folder, tmp_path, capsys):
    out = tmp_path / "select"
    args = [
        *_select_args(folder, out, RECIPES[:2], 2),
        "--seeds",
        "1",
        "2",
        "--workers",
        "2",  # the race and then the winner's two seeds side by side, in processes of their own
    ]
    assert ltzoo_main(args) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["winner"] == board["rows"][0]["recipe"] and (out / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "select.json").read_text())
    assert summary["winner"] == board["winner"] and set(summary["seeds"]) == {"0", "1"}
    report = json.loads((Path(out / "winner" / summary["onnx"]["folder"]) / "export_report.json").read_text())
    assert report["failures"] == [] and report["verification"]["mode"] == "dataset"
    assert "calibrat" in (out / "winner" / "calibrated" / "README.md").read_text()


def test_bad_input_fails_first_and_writes_nothing(folder, tmp_path, capsys):
    one_class = make_imagefolder(tmp_path / "one", train=[5], val=[2], test=[2])
    base = ["select", "--out", str(tmp_path / "never"), "--epochs", "8"]
    cases = {
        "unknown recipe": (
            [*base, "--data", f"imagefolder:{folder}", "--recipes", "ce_resnet3.fmnist_lt"],
            "Did you mean",
        ),
        "one class": ([*base, "--data", f"imagefolder:{one_class}", "--recipes", RECIPES[0]], "at least 2"),
        "storage": (
            [
                *base,
                "--data",
                f"imagefolder:{folder}",
                "--recipes",
                RECIPES[0],
                "--storage",
                str(tmp_path / "no_such_folder" / "study.journal"),
            ],
            "--storage",
        ),
        "budget": (
            [*base, "--data", f"imagefolder:{folder}", "--recipes", *RECIPES, "--budget-minutes", "0.0001"],
            "too small for even the first rung",
        ),
    }
    for case, (args, expected) in cases.items():
        assert ltzoo_main(args) == 2, case
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1, (case, err)
    assert not (tmp_path / "never").exists()
