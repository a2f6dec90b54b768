"""The benchmarks' smoke mode, end to end: `python -m benchmarks.X --quick` trains, writes ``*_quick`` results
and renders a quick report, without touching the full results or the README; and the training benchmarks'
one command line."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Every benchmark that trains arms x seeds takes the same flags with the same defaults.
TRAINING_BENCHMARKS = (
    "accuracy",
    "ce_budget",
    "dscl_ablation",
    "dscl_budget",
    "dscl_probe_bn",
    "iccl_ablation",
    "precision_accuracy",
    "recipe_sweep",
    "synergy_ablation",
    "wb_benchmark",
    "wb_selection",
)


@pytest.fixture
def benchmarks_package(monkeypatch):
    """The benchmarks are modules of the ``benchmarks`` package at the repository root."""
    monkeypatch.syspath_prepend(str(ROOT))


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LTZOO_BENCH_RESULTS": str(tmp_path / "results"),
        "LTZOO_BENCH_WORK": str(tmp_path / "work"),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("name", TRAINING_BENCHMARKS)
def test_training_benchmarks_share_one_command_line(name, benchmarks_package, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    usage = " ".join(capsys.readouterr().out.split())
    assert usage.startswith(
        f"usage: python -m benchmarks.{name} [-h] [--quick] [--seeds SEEDS [SEEDS ...]] "
        "[--threads THREADS] [--jobs JOBS] [--work-dir WORK_DIR]"
    )
    assert "training runs in parallel, each in its own process (default 2: one per core)" in usage
    assert "torch intra-op threads per training process (default 1)" in usage
    assert "--results-dir" not in usage


def test_quick_args_keep_the_first_seed_and_name_the_work_dir(benchmarks_package):
    from benchmarks.common import WORK_DIR, parse_benchmark_args

    args = parse_benchmark_args("x", ["--quick", "--seeds", "3", "4"], description="x")
    assert (args.quick, args.seeds, args.threads, args.jobs, args.work_dir) == (True, [3], 1, 2, WORK_DIR / "x_quick")
    args = parse_benchmark_args("x", ["--jobs", "1", "--work-dir", "w"], description="x", default_seeds=(5,))
    assert (args.seeds, args.jobs, args.work_dir) == ([5], 1, Path("w"))


@pytest.mark.slow
def test_quick_accuracy_and_iccl_ablation_write_quick_results_and_report(tmp_path):
    readme_before = (ROOT / "README.md").read_text()
    accuracy = _run(
        ["-m", "benchmarks.accuracy", "--quick", "--only", "ce_resnet32.fmnist_lt", "--jobs", "2"], tmp_path
    )
    assert accuracy.returncode == 0, accuracy.stderr[-2000:]
    iccl = _run(["-m", "benchmarks.iccl_ablation", "--quick", "--arms", "ce", "iccl_no_stage2"], tmp_path)
    assert iccl.returncode == 0, iccl.stderr[-2000:]

    results = tmp_path / "results"
    names = sorted(p.name for p in results.iterdir())
    assert "accuracy_quick.json" in names and "iccl_ablation_quick.json" in names
    assert not any(n in names for n in ("accuracy.json", "iccl_ablation.json")), "a smoke run wrote full-mode names"

    report = json.loads((results / "accuracy_quick.json").read_text())
    assert report["quick"] is True
    # CE and the balanced upper bound, one seed each, trained in two processes; accuracy is a percentage.
    assert set(report["rows"]) == {"ce_resnet32.fmnist_lt", "ce_resnet32.fmnist_balanced"}
    for row in report["rows"].values():
        assert len(row["test"]) == 1 and 0.0 <= row["test"][0]["all"] <= 100.0
        assert len(row["per_class"][0]) == 10
    # The upper bound trained on its own (balanced) data: its run is not CE's run reused.
    # Results name no folder of this machine: the work folder (outside the repo here) by its variable.
    work = tmp_path / "work"
    assert all(row["run_dir"][0].startswith("$LTZOO_BENCH_WORK/") for row in report["rows"].values())
    hashes = {
        name: json.loads((Path(row["run_dir"][0].replace("$LTZOO_BENCH_WORK", str(work))) / "config.json").read_text())[
            "ltzoo"
        ]["index_sha256"]
        for name, row in report["rows"].items()
    }
    assert hashes["ce_resnet32.fmnist_lt"] != hashes["ce_resnet32.fmnist_balanced"]
    assert (results / "accuracy_quick_per_class.png").stat().st_size > 0

    iccl_report = json.loads((results / "iccl_ablation_quick.json").read_text())
    assert set(iccl_report["arms"]) == {"ce", "iccl_no_stage2"}
    for arm in iccl_report["arms"].values():
        assert set(arm["test"]) == {"all", "many", "medium", "few"}
        assert arm["runs"][0]["run_dir"].startswith("$LTZOO_BENCH_WORK/")

    render = _run(["-c", "from benchmarks.report import render; print(render(quick=True))"], tmp_path)
    assert render.returncode == 0, render.stderr[-2000:]
    quick_report = (results / "REPORT_quick.md").read_text()
    assert "not results" in quick_report
    assert "Accuracy on fmnist_lt" in quick_report and "ICCL ablation" in quick_report
    assert (ROOT / "README.md").read_text() == readme_before, "a quick report must not touch the README"


def test_the_select_benchmark_judges_the_pick_against_the_candidate_rows(benchmarks_package, tmp_path, monkeypatch):
    # The judging of a finished `ltzoo select` (its files, as the command writes them) against the tables; the
    # command itself runs end to end in tests/test_select.py.
    from benchmarks import select as bench

    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(bench, "WORK_DIR", tmp_path / "work")
    names = ("a_resnet32", "b_resnet32", "c_resnet32", "d_resnet32")

    def runs(*values):
        return [{"all": v} for v in values]

    rows = {f"{n}.fmnist_lt": {"val": runs(70 + i, 71 + i), "test": runs(80 + i, 82 + i)} for i, n in enumerate(names)}
    rows["a_resnet32.fmnist_balanced"] = {"val": runs(95, 95), "test": runs(95, 95)}  # the upper bound: no row
    calibration = {"rows": {"b_resnet32.fmnist_lt": [{"calibrated": {"test": {"all": 90.0}}}]}}
    for name, content in {"accuracy.json": {"rows": rows}, "calibration.json": calibration}.items():
        (tmp_path / "results").mkdir(exist_ok=True)
        (tmp_path / "results" / name).write_text(json.dumps(content))
    out = bench.run_dir(False, 30, 2)
    (out / "winner" / "calibrated").mkdir(parents=True)
    rungs = {n: {"1": {"val_all": 50 + i}, "2": {"val_all": 60 - i}} for i, n in enumerate(names)}
    board = [{"recipe": f"{n}.fmnist_lt", "rungs": rungs[n]} for n in reversed(names)]
    (out / "leaderboard.json").write_text(json.dumps({"rows": board}))
    (out / "select.json").write_text(
        json.dumps(
            {
                "winner": "d_resnet32.fmnist_lt",
                "seeds": {"0": {"val": 74, "test": 83}, "1": {"val": 75, "test": 85}},
                "shipped_seed": 1,
                "calibrated": "la",
                "onnx": {"variant": "fp32", "int8_refused": "int8 lost tail accuracy"},
            }
        )
    )
    (out / "winner" / "calibrated" / "metrics.json").write_text(json.dumps({"val": {"all": 76}, "test": {"all": 86}}))
    measured = {
        "quick": False,
        "epochs": 30,
        "workers": 2,
        "budget_minutes": 60,
        "wall_minutes": 40,
        "race_minutes": 25,
    }
    judged = bench.outcome(bench.run_facts(measured))
    assert "a_resnet32" in judged["rows"] and len(judged["rows"]) == 5  # 4 candidates + 1 calibrated, no bound
    assert judged["best_row"] == {"name": "b_resnet32, calibrated", "test_all": [90.0]}
    assert judged["pick_minus_best"] == pytest.approx(84 - 90)
    assert judged["spearman_by_rung"][1] == pytest.approx(1.0) and judged["spearman_by_rung"][2] == pytest.approx(-1.0)
    text = bench.render(measured, judged)
    assert "within 1 point NOT met" in text and "target 60: met" in text and "refused int8" in text
    assert "about 100 min to race" in text  # 25 min x 120 / 30

    # runs/ is git-ignored: on a fresh clone --render-only re-judges the facts recorded in results/select.json.
    from benchmarks.common import write_results

    (tmp_path / "results" / "select.json").write_text(json.dumps({**measured, **judged}))
    shutil.rmtree(out)
    monkeypatch.setattr(bench, "write_results", lambda *args: write_results(*args, results_dir=tmp_path / "results"))
    assert bench.main(["--render-only"]) == {**measured, **judged}


def test_a_run_of_another_recipe_is_set_aside_not_reused(tmp_path, benchmarks_package):
    """A benchmark's run directory that holds an older recipe (the recipe changed since) is moved to
    ``*.superseded-N`` instead of being reported as the new recipe; a matching one stays."""
    from benchmarks.common import set_aside_if_other_recipe
    from ltzoo.registry import get_entry

    recipe = get_entry("dscl_resnet32.fmnist_lt").recipe().to_dict()
    run = tmp_path / "dscl_fmnist_lt_seed0"
    old = json.loads(json.dumps(recipe))
    old["method_args"]["classifier_augment"] = "official"
    for _ in range(2):  # the second stale run gets the next free name
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"ltzoo": {"recipe": old}}))
        (run / "metrics.json").write_text("{}")
        moved = set_aside_if_other_recipe(run, recipe)
        assert moved is not None and not run.exists() and (moved / "metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{run.name}.superseded-{n}" for n in (1, 2)]

    run.mkdir()
    (run / "config.json").write_text(json.dumps({"ltzoo": {"recipe": recipe}}))
    assert set_aside_if_other_recipe(run, recipe) is None and run.is_dir()
    assert set_aside_if_other_recipe(tmp_path / "never_trained", recipe) is None


def test_knn_and_ncm_probes_on_separable_features(benchmarks_package):
    import numpy as np

    from benchmarks.feature_probes import knn_predict, ncm_predict

    rng = np.random.default_rng(0)
    centres = np.eye(3)
    labels = np.repeat(np.arange(3), [50, 10, 2])  # long-tailed memory
    memory = centres[labels] + 0.05 * rng.standard_normal((62, 3))
    memory /= np.linalg.norm(memory, axis=1, keepdims=True)
    queries = centres + 0.01
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    assert ncm_predict(memory, labels, queries, 3).tolist() == [0, 1, 2]  # class means ignore the class sizes
    # kNN with k=20 votes for the head class near a 2-image class: the bias it measures in representations.
    assert knn_predict(memory, labels, queries, 3, k=20).tolist()[:2] == [0, 1]
    assert knn_predict(memory, labels, queries, 3, k=1).tolist() == [0, 1, 2]


@pytest.mark.slow
def test_accuracy_on_own_data_writes_its_own_results_without_an_upper_bound(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from custom_data_fixtures import make_imagefolder  # type: ignore[import-not-found]

    data = make_imagefolder(
        tmp_path / "parts", train=[40, 12, 4], val=[4, 4, 4], test=[4, 4, 4], names=["bolt", "nut", "washer"]
    )
    ran = _run(
        [
            "-m",
            "benchmarks.accuracy",
            "--quick",
            "--data",
            f"imagefolder:{data}",
            "--only",
            "ce_resnet32.fmnist_lt",
            "ldam_drw_resnet32.fmnist_lt",
            "--jobs",
            "1",
        ],
        tmp_path,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    results = tmp_path / "results"
    assert (results / "accuracy_parts_quick.json").is_file() and not (results / "accuracy_quick.json").exists()
    report = json.loads((results / "accuracy_parts_quick.json").read_text())
    assert set(report["rows"]) == {"ce_resnet32.fmnist_lt", "ldam_drw_resnet32.fmnist_lt"}  # no upper bound row
    assert report["class_counts"] == [40, 12, 4]
    md = (results / "accuracy_parts_quick.md").read_text()
    assert "No balanced upper bound" in md and "gap closed" not in md.split("\n\n")[1]


def test_accuracy_plans_own_data_once_per_row(benchmarks_package, tmp_path):
    """Planning a row on own data loads the data; the fingerprint is asked for per kept row and per fresh row,
    so the plan is made once per (row, source) in a process."""
    sys.path.insert(0, str(ROOT / "tests"))
    from custom_data_fixtures import make_imagefolder  # type: ignore[import-not-found]

    import benchmarks.accuracy as accuracy

    data = make_imagefolder(tmp_path / "parts", train=[12, 6, 3], val=[3, 3, 3], test=[3, 3, 3], names=["a", "b", "c"])
    source, ce = f"imagefolder:{data}", "ce_resnet32.fmnist_lt"
    accuracy.own_data_plan.cache_clear()
    first = accuracy.row_recipe_sha256(ce, source)
    assert accuracy.row_recipe_sha256(ce, source) == first
    assert accuracy.own_data_plan.cache_info().misses == 1
    assert first != accuracy.row_recipe_sha256(ce, None), "own data derives its own recipe"


def test_accuracy_keeps_earlier_rows_only_while_their_recipe_is_unchanged(benchmarks_package, tmp_path, monkeypatch):
    """One invocation per few rows is the unit of work on 2 cores: a later invocation keeps the rows of an
    earlier one, unless the recipe changed since (then the old numbers must not be reported as the new recipe's)."""
    import benchmarks.accuracy as accuracy

    monkeypatch.setattr(accuracy, "RESULTS_DIR", tmp_path)
    ce, ldam = "ce_resnet32.fmnist_lt", "ldam_drw_resnet32.fmnist_lt"
    row = {"seeds": [0], "test": [{"all": 80.0, "many": 90.0, "medium": 70.0, "few": 75.0}]}
    rows = {
        ce: {**row, "recipe_sha256": accuracy.row_recipe_sha256(ce, None)},
        ldam: {**row, "recipe_sha256": "0" * 64},  # written by another recipe
        accuracy.UPPER_BOUND: {**row, "recipe_sha256": accuracy.row_recipe_sha256(ce, None)},
    }  # CE's, not the bound's
    (tmp_path / "accuracy.json").write_text(json.dumps({"rows": rows}))
    kept = accuracy.earlier_rows("accuracy", False, None, [ce, ldam, accuracy.UPPER_BOUND])
    assert list(kept) == [ce]
    assert accuracy.earlier_rows("accuracy", True, None, [ce]) == {}, "a quick run must not read the full results"


def test_calibration_keeps_earlier_seeds_whose_runs_are_not_here(benchmarks_package, tmp_path, monkeypatch):
    """runs/ is git-ignored, so a fresh clone has no run: a seed calibrated on an earlier machine keeps its record
    (while its recipe is unchanged) instead of falling back to "missing", and the report says how many were kept."""
    from benchmarks import calibration as bench
    from benchmarks.common import write_results

    ce, ldam, wb = bench.CE, "ldam_drw_resnet32.fmnist_lt", "wb_resnet32.fmnist_lt"
    split = {"all": 80.0, "many": 90.0, "medium": 70.0, "few": 75.0}
    better = {**split, "all": 82.0}

    def record(seed, fingerprint):
        return {
            "seed": seed,
            "plain": {"val": split, "test": split},
            "calibrated": {"val": better, "test": better},
            "method": "la",
            "parameter": 1.0,
            "seconds": 20.0,
            "recipe_sha256": fingerprint,
        }

    earlier = {
        "rows": {
            ce: [record(0, bench.row_recipe_sha256(ce, None)), record(1, bench.row_recipe_sha256(ce, None))],
            ldam: [record(0, "0" * 64)],  # calibrated from runs of another recipe: not kept
            wb: [record(2, bench.row_recipe_sha256(wb, None))],  # left out by --only: kept, not dropped
        },
        "command_timing": {"seconds": 30.0, "load_average_at_start": 1.0},
    }
    (tmp_path / "calibration.json").write_text(json.dumps(earlier))
    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(bench, "find_finished_run", lambda *args, **kwargs: None)  # no run on this machine
    monkeypatch.setattr(bench, "write_results", lambda *args: write_results(*args, results_dir=tmp_path))

    report = bench.main(["--only", ce, ldam])

    assert [run["seed"] for run in report["rows"][ce]] == [0, 1] and ldam not in report["rows"]
    assert [run["seed"] for run in report["rows"][wb]] == [2]
    assert report["carried"] == [f"{ce} seed 0", f"{ce} seed 1", f"{wb} seed 2"]
    assert report["missing"] == [f"{ce} seed 2", f"{ldam} seed 0", f"{ldam} seed 1", f"{ldam} seed 2"]
    assert report["command_timing"]["carried"] is True
    markdown = (tmp_path / "calibration.md").read_text()
    assert "3 of 3 seeds" in markdown and "timed in an earlier run" in markdown
    assert json.loads((tmp_path / "calibration.json").read_text())["rows"][ce][0]["recipe_sha256"] == (
        bench.row_recipe_sha256(ce, None)
    ), "a kept record keeps its fingerprint, so a later run keeps it again"


def test_shifted_priors_and_feature_probes_keep_earlier_seeds_whose_runs_are_not_here(
    benchmarks_package, tmp_path, monkeypatch
):
    """Like the calibration table: on a fresh clone (no runs) these benchmarks report the earlier records of an
    unchanged recipe instead of writing an empty table; shifted priors also need the same draw, feature probes
    the same budget."""
    import numpy as np

    import ltzoo
    from benchmarks import feature_probes, shifted_priors
    from benchmarks.common import recipe_sha256, write_results
    from ltzoo.data import build_dataset

    def fingerprint(name, recipe=None):
        return recipe_sha256(recipe or ltzoo.get_entry(name).recipe(), row=name)

    ce = "ce_resnet32.fmnist_lt"
    data = build_dataset("fmnist_lt")
    draw = shifted_priors.shifted_test_sets(np.asarray(data.test.targets), data.num_classes)
    scores = {test_set: {prior: 80.0 for prior in shifted_priors.PRIORS} for test_set in draw}
    for per_prior in scores.values():
        per_prior["em_total_variation"] = 0.1
    indices = {k: v for k, v in draw.items() if k != "balanced"}
    probe = {"knn": {s: {"all": 80.0, "many": 80.0, "medium": 80.0, "few": 80.0} for s in ("val", "test")}}
    probe["ncm"] = probe["knn"]
    (tmp_path / "shifted_priors.json").write_text(
        json.dumps(
            {
                "test_set_indices": indices,
                "results": {
                    "CE": [{"seed": 0, "run": "x", "scores": scores, "recipe_sha256": fingerprint(ce)}],
                    "DSCL + PBSD": [{"seed": 0, "run": "x", "scores": scores, "recipe_sha256": "0" * 64}],
                },
            }
        )
    )
    (tmp_path / "feature_probes.json").write_text(
        json.dumps({"runs": {ce: [{"seed": 1, **probe, "recipe_sha256": fingerprint(ce)}]}})
    )
    for module in (shifted_priors, feature_probes):
        monkeypatch.setattr(module, "RESULTS_DIR", tmp_path)
        monkeypatch.setattr(module, "find_finished_run", lambda *args, **kwargs: None)  # no run on this machine
        monkeypatch.setattr(module, "write_results", lambda *args: write_results(*args, results_dir=tmp_path))

    shifted = shifted_priors.main([])
    assert list(shifted["results"]) == ["CE"], "DSCL + PBSD's record is of another recipe"
    assert shifted["carried"] == [f"{ce} seed 0"] and len(shifted["missing"]) == 8
    assert "1 of 1 seeds" in (tmp_path / "shifted_priors.md").read_text()
    probes = feature_probes.main([])
    assert [run["seed"] for run in probes["runs"][ce]] == [1] and probes["carried"] == [f"{ce} seed 1"]
    assert "1 of 1 seeds" in (tmp_path / "feature_probes.md").read_text()

    (tmp_path / "shifted_priors.json").write_text(
        json.dumps({**json.loads((tmp_path / "shifted_priors.json").read_text()), "test_set_indices": {}})
    )
    assert shifted_priors.main([])["results"] == {}, "records of another draw are not kept"
    (tmp_path / "feature_probes_30ep.json").write_text((tmp_path / "feature_probes.json").read_text())
    assert feature_probes.main(["--epochs", "30"])["runs"] == {}, "records of the full budget are not a 30-epoch row"


def test_shifted_prior_targets_count_an_em_gain_on_the_balanced_test_as_no_cost(benchmarks_package):
    """cost = uniform - EM on the balanced test: EM scoring above uniform is a negative cost (met), EM scoring
    more than 0.3 below it is not; recovery is EM's share of the oracle's gain over uniform on backward-50."""
    from benchmarks.shifted_priors import targets

    def run(balanced_uniform, balanced_em, backward_uniform, backward_em, backward_oracle):
        return {
            "scores": {
                "balanced": {"uniform": balanced_uniform, "EM": balanced_em},
                "backward-50": {"uniform": backward_uniform, "EM": backward_em, "oracle": backward_oracle},
            }
        }

    gains = targets({"A": [run(80.0, 80.9, 70.0, 79.0, 80.0)]})
    assert [v["verdict"] for v in gains] == ["met", "met"]
    assert "A 90 %" in gains[0]["measured"] and "A -0.90" in gains[1]["measured"]
    costs = targets({"A": [run(80.0, 80.9, 70.0, 79.0, 80.0)], "B": [run(80.0, 79.5, 70.0, 77.0, 80.0)]})
    assert [v["verdict"] for v in costs] == ["NOT met", "NOT met"], "B: 70 % recovery, EM costs 0.5 points"


def test_accuracy_targets_are_judged_from_the_table(benchmarks_package):
    from benchmarks.accuracy import UPPER_BOUND, target_verdicts

    def row(seeds, alls, few, closed=None):
        return {
            "seeds": seeds,
            "gap_closed_pct": closed,
            "test": [{"all": a, "many": 90.0, "medium": 70.0, "few": few} for a in alls],
        }

    rows = {
        "ce_resnet32.fmnist_lt": row([0, 1], [80.0, 81.0], 70.0),
        "dscl_pbsd_resnet32.fmnist_lt": row([0], [80.0], 75.0, closed=-10.0),
        "dscl_resnet32.fmnist_lt": row([0, 1], [78.0, 79.0], 69.0, closed=-40.0),
        "scl_resnet32.fmnist_lt": row([1, 2], [78.5, 70.0], 72.0, closed=-70.0),
        UPPER_BOUND: row([0], [90.0], 90.0),
    }
    verdicts = {target.split(" (")[0]: (measured, verdict) for target, measured, verdict in target_verdicts(rows)}
    assert verdicts["every method >= CE on few-shot"] == ("CE few 70.0; below: dscl 69.0", "NOT met")
    assert verdicts["DSCL + PBSD >= CE overall"][1] == "NOT met"  # 80.0 against CE's mean 80.5
    assert verdicts["the best method closes >= 60 % of the CE -> upper-bound gap"] == ("dscl_pbsd -10.0 %", "NOT met")
    assert verdicts["DSCL > SCL on every seed"] == ("1/1 seeds", "met")  # only seed 1 is common: 79.0 > 78.5
    # PBSD's gain is paired by seed (seed 0 only here: 80.0 - 78.0 overall, 75.0 - 69.0 few), with no threshold.
    measured, verdict = verdicts["what PBSD adds to DSCL"]
    assert verdict == "reported" and "all +2.00" in measured and "few +6.00" in measured and "(1 seed(s))" in measured
    rows["dscl_pbsd_resnet32.fmnist_lt"] = row([0, 1], [80.0, 80.0], 75.0)
    assert (
        "all +1.50 ± 0.71" in dict((t.split(" (")[0], m) for t, m, _ in target_verdicts(rows))["what PBSD adds to DSCL"]
    )
    del rows["scl_resnet32.fmnist_lt"]
    assert ["DSCL > SCL on every seed", "-", "not measured"] in target_verdicts(rows)


def test_recipe_sweep_adopts_the_best_val_run_of_the_winners_alone_and_combined(benchmarks_package):
    from benchmarks.recipe_sweep import adopted, render

    def run(val):
        return {"val": {"all": val}, "test": {"all": 0.0, "many": 0.0, "medium": 0.0, "few": 0.0}}

    entry = {
        "grid": {"views": ["rrc_0.2", "rrc_0.8"], "lr": ["lr_x1", "lr_x2"]},
        "base_values": {"views": "rrc_0.2", "lr": "lr_x1"},
        "winners": {"views": "rrc_0.8", "lr": "lr_x2"},
        "combined": [["views", "rrc_0.8"], ["lr", "lr_x2"]],
        "runs": {"base": run(70.0), "rrc_0.8": run(76.0), "lr_x2": run(72.0), "combined": run(74.0)},
    }
    # The combination beats the base but not the view alone (the flagship's case): the view alone is adopted.
    assert adopted(entry) == [("views", "rrc_0.8")]
    entry["runs"]["combined"] = run(77.0)
    assert adopted(entry) == [("views", "rrc_0.8"), ("lr", "lr_x2")]
    entry["runs"]["combined"] = run(76.0)  # a tie goes to the single change: fewer departures from the base
    assert adopted(entry) == [("views", "rrc_0.8")]
    # A factor whose winner is the base's own value adds no candidate; nothing above the base adopts nothing.
    entry.update(winners={"views": "rrc_0.2", "lr": "lr_x1"}, combined=[])
    del entry["runs"]["combined"]
    assert adopted(entry) == []
    assert "Adopted: nothing (no change beat the base on val)." in render(
        {"quick": False, "seed": 0, "epochs": 30, "recipes": {"x.fmnist_lt": entry}}
    )


def test_claims_compare_the_zoo_recipes_of_the_accuracy_table_seed_by_seed(benchmarks_package, tmp_path):
    from benchmarks.claims import converged_budget_claims

    def row(seeds, alls):
        return {"seeds": seeds, "test": [{"all": a, "many": 0.0, "medium": 0.0, "few": 0.0} for a in alls]}

    rows = {
        "ce_resnet32.fmnist_lt": row([0, 1], [80.0, 81.0]),
        "scl_resnet32.fmnist_lt": row([0, 1], [78.0, 82.0]),
        "dscl_resnet32.fmnist_lt": row([0, 1], [79.0, 81.5]),
        "dscl_pbsd_resnet32.fmnist_lt": row([0], [80.0]),
        "wb_resnet32.fmnist_lt": row([0, 1], [75.0, 76.0]),
        "wb_onestage_resnet32.fmnist_lt": row([0, 1], [75.0, 77.0]),
        "ce_resnet32.fmnist_balanced": row([0], [90.0]),
    }
    (tmp_path / "accuracy.json").write_text(
        json.dumps(
            {"benchmark": "accuracy", "quick": False, "budget_epochs": 120, "machine": {"cpu": "x"}, "rows": rows}
        )
    )
    claims = {c["claim"]: (c["verdict"], c["seeds"]) for c in converged_budget_claims(tmp_path)}
    assert claims["SCL < DSCL < DSCL + PBSD (zoo recipes)"] == ("held", "1/1")  # seed 0 only: 78 < 79 < 80
    assert claims["DSCL > SCL (zoo recipes)"] == ("mixed", "1/2")
    assert claims["DSCL + PBSD >= CE overall (the direction of the paper's claim)"] == ("held", "1/1")  # 80 >= 80
    assert claims["one stage >= two stages (zoo recipes)"] == ("held", "2/2")
    assert claims["the combination beats each of SCL, RSG and LDAM-DRW (zoo recipes)"] == ("not measured", "-")
    assert all("120 epochs" in c["source"] for c in converged_budget_claims(tmp_path))


def test_weight_balancing_claims_name_the_budget_of_the_runs_they_compare(benchmarks_package, tmp_path):
    from benchmarks.claims import wb_claims

    wb = {"stages": [{"epochs": 108}, {"epochs": 12}]}
    per_seed = [{"ce": {"test": {"fisher_ratio": 50.0}}, "ce_wd": {"test": {"fisher_ratio": f}}} for f in (60.0, 40.0)]
    (tmp_path / "wb_benchmark.json").write_text(
        json.dumps(
            {
                "benchmark": "wb_benchmark",
                "machine": {"cpu": "x"},
                "recipes": {"wb_resnet32.fmnist_lt": wb},
                "claim": {"seeds_where_one_stage_ge": "2/2"},
                "per_seed": per_seed,
            }
        )
    )
    one_stage, fisher = wb_claims(tmp_path)
    assert (one_stage["verdict"], fisher["verdict"], fisher["seeds"]) == ("held", "mixed", "1/2")
    assert all(row["source"].startswith("wb_benchmark (120 epochs;") for row in (one_stage, fisher))


def _recorded_row(per_class: list[list[float]], train_time_s: list[float]) -> dict:
    """An accuracy row as ``benchmarks.accuracy.main`` records it (one entry per seed in every list)."""
    seeds = list(range(len(train_time_s)))
    test = [{"all": 80.0 + s, "many": 90.0, "medium": 70.0, "few": 60.0 + s} for s in seeds]
    return {
        "seeds": seeds,
        "recipe_sha256": "0" * 64,
        "test": test,
        "val": test,
        "per_class": per_class,
        "train_time_s": train_time_s,
        "run_dir": [f"runs/x_seed{s}" for s in seeds],
    }


def test_accuracy_per_class_lines_run_along_the_count_axis(benchmarks_package, tmp_path, monkeypatch):
    """Label order is not count order (own data, or fmnist_lt's descending counts): each line must still be drawn
    left to right along the count axis, each class's accuracy kept at its own count, or the lines zigzag."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    import benchmarks.accuracy as accuracy

    drawn: list[Figure] = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig), save(fig, *a, **k))[1])
    counts = [12, 400, 3, 40, 12, 150]  # a tie (12) too: classes 0 and 4
    rows = {
        "ce_resnet32.fmnist_lt": _recorded_row([[50, 95, 10, 70, 40, 90], [60, 97, 20, 72, 44, 88]], [60.0, 60.0]),
        "ldam_drw_resnet32.fmnist_lt": _recorded_row([[55, 90, 30, 75, 45, 85]], [90.0]),
        accuracy.UPPER_BOUND: _recorded_row([[80, 80, 80, 80, 81, 80]], [30.0]),
    }
    path = tmp_path / "accuracy_parts_per_class.png"
    accuracy.per_class_plot(rows, counts, path, "parts")
    assert path.stat().st_size > 0 and len(drawn) == 1
    lines = drawn[0].axes[0].get_lines()
    assert len(lines) == len(rows)
    for line, row in zip(lines, rows.values(), strict=True):
        x, y = np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)
        assert np.all(np.diff(x) >= 0), f"{line.get_label()} zigzags: x = {x.tolist()}"
        mean = np.mean(np.array(row["per_class"], dtype=float), axis=0)
        # Each point is still (class count, that class's accuracy); the tie keeps label order (class 0, then 4).
        assert sorted(zip(x.tolist(), y.tolist())) == sorted(zip(map(float, counts), mean.tolist()))
        assert y[1:3].tolist() == [mean[0], mean[4]]  # after class 2 (3 images)


def _table_cell(md: str, method: str, column: str) -> str:
    """The cell of ``column`` in the row of ``method`` of the report's (first) markdown table."""
    table = [line for line in md.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    for line in table[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == method:
            return cells[header.index(column)]
    raise AssertionError(f"{method} not in the table")


def _target_line(md: str) -> tuple[str, str, str]:
    """(method, its minutes per seed, its benchmark's minutes) as the report's time-target line states them."""
    import re

    line = next(line for line in md.splitlines() if line.startswith("Target ("))
    found = re.search(r"slowest (\S+) ([\d.]+) min/seed .*?= ([\d.]+) min ->", line)
    assert found, line
    return found.group(1), found.group(2), found.group(3)


def test_accuracy_time_target_states_the_tables_minutes_on_own_data(benchmarks_package, tmp_path, monkeypatch):
    """The reported case: one seed of 29.9 min on own data; the line said 15 min (the seeds' sum halved) while
    the table said 29.9 min/seed. Both now read one helper, and one run on one core takes its whole time."""
    sys.path.insert(0, str(ROOT / "tests"))
    from custom_data_fixtures import make_imagefolder  # type: ignore[import-not-found]

    import benchmarks.accuracy as accuracy

    monkeypatch.setattr(accuracy, "RESULTS_DIR", tmp_path / "results")
    data = make_imagefolder(
        tmp_path / "parts", train=[4, 40, 12], val=[2, 2, 2], test=[2, 2, 2], names=["bolt", "nut", "washer"]
    )  # label order is not count order
    rows = {
        "ce_resnet32.fmnist_lt": _recorded_row([[10.0, 90.0, 50.0]], [600.0]),
        "dscl_resnet32.fmnist_lt": _recorded_row([[30.0, 85.0, 60.0]], [29.9 * 60]),
    }
    report, md = accuracy.accuracy_report(rows, [0], "accuracy_parts", "parts", f"imagefolder:{data}", False, 1800.0)
    method, per_seed, benchmark = _target_line(md)
    assert method == "dscl_resnet32"
    assert per_seed == _table_cell(md, method, "train min/seed") == "29.9"
    assert benchmark == "29.9", "one seed is one 1-thread run: its benchmark lasts the whole run"
    assert report["benchmark_minutes_per_method"]["dscl_resnet32.fmnist_lt"] == pytest.approx(29.9)
    assert "not this invocation's wall time" in md
    assert (tmp_path / "results" / "accuracy_parts_per_class.png").stat().st_size > 0


def test_accuracy_time_target_states_the_tables_minutes_over_seeds(benchmarks_package):
    """Three seeds, two at a time on 2 cores: two rounds of the table's minutes per seed (not the seeds' sum / 2)."""
    from benchmarks.accuracy import UPPER_BOUND, report_markdown

    rows = {
        "ce_resnet32.fmnist_lt": _recorded_row([[50.0] * 10] * 3, [1000.0, 960.0, 1040.0]),
        "scl_rsg_ldam_resnet32.fmnist_lt": _recorded_row([[60.0] * 10] * 3, [2900.0, 2950.0, 2970.0]),
        "wb_resnet32.fmnist_lt": _recorded_row([[55.0] * 10] * 2, [700.0, 700.0]),
        UPPER_BOUND: _recorded_row([[80.0] * 10] * 3, [700.0, 740.0, 760.0]),
    }
    md = report_markdown(rows, [0, 1, 2], "fmnist_lt", None, False, 60.0, "accuracy_per_class.png")
    method, per_seed, benchmark = _target_line(md)
    assert method == "scl_rsg_ldam_resnet32"
    assert per_seed == _table_cell(md, method, "train min/seed") == "49.0"
    assert benchmark == "98.0"


def test_benchmarks_run_after_the_results_they_read():
    from benchmarks.run import READS, discover

    order = discover()
    for reader, sources in READS.items():
        assert all(order.index(source) < order.index(reader) for source in sources), (reader, order)
