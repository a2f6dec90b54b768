"""The winner of ``ltzoo select``, made deployable: trained at its full budget for every winner seed, the seed
with the best val calibrated on val, exported with the per-split gate, carded, and pushed when asked."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ltzoo.selection.race import Candidate

log = logging.getLogger("ltzoo.select")


def train_winner_seeds(candidate: Candidate, options: Any, race: Any) -> list[Path]:
    """The race's own run continued to the full budget (its seed), and a fresh full run per other seed; with
    ``--workers N`` the seeds train side by side in N processes of one thread each."""
    from ltzoo.names import METRICS_FILE

    runs = {seed: _winner_run_dir(candidate, options, race, seed) for seed in options.winner_seeds}
    todo = [seed for seed, run in runs.items() if not (run / METRICS_FILE).is_file()]
    if options.workers > 1 and len(todo) > 1:
        from ltzoo.selection.jobs import run_jobs

        # processes of their own (not a Pool's daemons: a recipe's DataLoader may start workers)
        run_jobs(_train_seed_in_own_process, [(options, candidate.name, seed) for seed in todo], options.workers)
    else:
        for seed in todo:
            train_winner_seed(candidate, options, race, seed)
    return list(runs.values())


def _winner_run_dir(candidate: Candidate, options: Any, race: Any, seed: int) -> Path:
    return race.run_dir(candidate) if seed == options.race_seed else options.out / "winner" / f"seed{seed}"


def _train_seed_in_own_process(options: Any, name: str, seed: int) -> None:
    import torch

    from ltzoo.selection.candidates import make_race, plan_candidates

    torch.set_num_threads(1)
    candidates = plan_candidates(options)  # planned here: nothing heavy crosses the process boundary
    train_winner_seed(candidates[name], options, make_race(options, candidates, None), seed)


def train_winner_seed(candidate: Candidate, options: Any, race: Any, seed: int) -> Path:
    from ltzoo.engine.trainer import Trainer
    from ltzoo.names import CHECKPOINT_DIR, LAST_CHECKPOINT

    plan, out = candidate.plan, _winner_run_dir(candidate, options, race, seed)
    resume = (out / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file()
    log.info(
        "winner %s, seed %d: training its full budget (%d epochs) in %s",
        candidate.name,
        seed,
        candidate.full_epochs,
        out,
    )
    Trainer(
        plan.recipe,
        out,
        name=plan.name,
        data=plan.data,
        model=None,
        extra_config=plan.extra_config,
        epochs=plan.epochs,
        resume=resume,
        seed=seed,
        **(race.train_options or {}),
    ).run()
    return out


def finalize(selection: Any, candidate: Candidate, options: Any, race: Any) -> None:
    from ltzoo.calibration.job import CalibrationOptions, calibrate
    from ltzoo.export.options import ExportOptions
    from ltzoo.export.pipeline import export_with_int8_fallback
    from ltzoo.fileio import atomic_write_bytes, atomic_write_json
    from ltzoo.names import METRICS_FILE

    runs = train_winner_seeds(candidate, options, race)
    selection.winner_runs = runs
    metrics = [json.loads((run / METRICS_FILE).read_text()) for run in runs]
    best = max(range(len(runs)), key=lambda i: (metrics[i]["val"]["all"], -i))  # chosen on val
    calibrated = options.out / "winner" / "calibrated"
    if not (calibrated / METRICS_FILE).is_file():
        calibrate(f"local-dir:{runs[best]}", calibrated, CalibrationOptions(method="auto"))
    selection.calibrated = calibrated
    export_options = ExportOptions(verify="dataset", data_root=options.data_root)
    report, onnx_dir, variant, refusal = export_with_int8_fallback(
        f"local-dir:{calibrated}", calibrated.parent / "onnx", export_options, data=candidate.plan.data
    )
    selection.onnx = onnx_dir
    card = _render_card(calibrated, report, onnx_dir, options.push or f"ltzoo-select/{candidate.plan.name}")
    atomic_write_bytes(calibrated / "README.md", card.encode())
    summary = {
        "winner": selection.winner,
        "seeds": {seed: {s: m[s]["all"] for s in ("val", "test")} for seed, m in zip(options.winner_seeds, metrics)},
        "shipped_seed": options.winner_seeds[best],
        "calibrated": json.loads((calibrated / METRICS_FILE).read_text())["calibration"]["method"],
        "onnx": {
            "folder": onnx_dir.name,
            "variant": variant,
            "int8_refused": None if refusal is None else str(refusal),
        },
    }
    if options.push:
        from ltzoo.publish.push import push_run

        summary["pushed"] = str(push_run(calibrated, options.push, onnx_dir=onnx_dir))
    atomic_write_json(options.out / "select.json", summary)


def _render_card(run: Path, report: Any, onnx_dir: Path, repo_id: str) -> str:
    """The model card the Hub would show, written beside the calibrated run."""
    from ltzoo.hub import layout
    from ltzoo.portable import portable_config
    from ltzoo.publish.card import read_metrics, render_card
    from ltzoo.runs import read_config

    files = [f"{layout.ONNX_DIR}/{path.name}" for path in sorted(onnx_dir.glob("*.onnx"))]
    return str(
        render_card(
            portable_config(read_config(run)), read_metrics(run), repo_id, export_report=report, onnx_files=files
        )
    )
