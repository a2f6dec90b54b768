"""Two-stage weight balancing on fmnist_lt before and after the model-selection fix.

Both WB stages select on val. Before the fix the trainer kept stage 1's best across the stage boundary,
so unless some stage-2 epoch beat stage 1's best val, the run saved its *last* stage-2 epoch while
``selected`` named a stage-1 epoch. Now selection restarts in every selecting stage and the saved model
is stage 2's best.

Training is identical under both rules (stage 2 starts from stage 1's best either way), so one run per
seed answers both: the fixed rule's model is the run's own; the old rule's is the stage-2 best when some
stage-2 epoch beat stage 1's best val, else the last epoch, which is the run's final checkpoint
(``checkpoints/last.pt``), evaluated here.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.wb_selection [--epochs 30] [--seeds 0 1 2]

Writes ``benchmarks/results/wb_selection.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.common import (
    GROUPS,
    BenchmarkArgs,
    ablation_main,
    fmt_mean_std,
    markdown_table,
    run_record,
    train_seeded,
)

NAME = "wb_resnet32.fmnist_lt"


def run_seed(name: str, seed: int, args: BenchmarkArgs) -> dict[str, Any]:
    import torch

    from ltzoo.data import build_dataset
    from ltzoo.engine.evaluator import TorchPredictor, evaluate_split
    from ltzoo.registry import get_entry
    from ltzoo.runs import model_from_config, read_config

    epochs = args.options.epochs
    limits: dict[str, Any] = (
        {"epochs": 2, "steps_per_epoch": 2} if args.quick else ({"epochs": epochs} if epochs else {})
    )
    metrics = train_seeded(name, seed, args.work_dir, recipe=get_entry(name).recipe(), **limits)
    run = Path(metrics["run_dir"])
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    stages = list(dict.fromkeys(line["stage"] for line in log))
    first_best = max(line["val_all"] for line in log if line["stage"] == stages[0])
    second = [line for line in log if line["stage"] == stages[-1]]
    beaten = any(line["val_all"] > first_best for line in second)
    fixed = run_record(metrics, seed=seed)
    if beaten:  # the old rule also ended on stage 2's best
        old = {
            "selected": {"stage": stages[-1], "epoch": max(second, key=lambda line: line["val_all"])["epoch"]},
            "val": fixed["val"],
            "test": fixed["test"],
        }
    else:  # the old rule kept the last stage-2 epoch: the final checkpoint's weights
        state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
        model = model_from_config(read_config(run))
        model.load_state_dict(state["model"])
        data = build_dataset("fmnist_lt")
        scores = {split: evaluate_split(TorchPredictor(model), data, split) for split in ("val", "test")}
        old = {
            "selected": {"stage": stages[-1], "epoch": second[-1]["epoch"], "named": {"stage": stages[0]}},
            "val": {g: scores["val"][g] for g in GROUPS},
            "test": {g: scores["test"][g] for g in GROUPS},
        }
    return {
        "seed": seed,
        "fixed": fixed,
        "old_rule": old,
        "stage2_beat_stage1": beaten,
        "stage1_best_val": first_best,
        "stage2_best_val": max(line["val_all"] for line in second),
    }


def summarise(results_by_name: dict[str, list[dict[str, Any]]], args: BenchmarkArgs) -> tuple[dict[str, Any], str]:
    results = results_by_name[NAME]
    seeds = args.seeds
    rows = [
        [
            rule,
            *[fmt_mean_std(r[key]["test"][g] for r in results) for g in GROUPS],
            fmt_mean_std(r[key]["val"]["all"] for r in results),
        ]
        for rule, key in (
            ("old rule (best carried over from stage 1)", "old_rule"),
            ("fixed (selection per stage)", "fixed"),
        )
    ]
    per_seed = [
        [
            r["seed"],
            f"{r['stage1_best_val']:.2f}",
            f"{r['stage2_best_val']:.2f}",
            "yes" if r["stage2_beat_stage1"] else "no (old rule saved the last epoch)",
            f"{r['fixed']['test']['all'] - r['old_rule']['test']['all']:+.2f}",
        ]
        for r in results
    ]
    moved = [r for r in results if r["fixed"]["test"]["all"] != r["old_rule"]["test"]["all"]]
    md = "\n".join(
        [
            "## Weight balancing (two stages) before and after the selection fix"
            + (" (quick: not a result)" if args.quick else ""),
            "",
            f"{NAME}, {len(seeds)} seed(s), test top-1 (%) as mean ± sample std.",
            "",
            markdown_table(["rule", *[f"test {g}" for g in GROUPS], "val all"], rows),
            "",
            markdown_table(
                ["seed", "stage-1 best val", "stage-2 best val", "a stage-2 epoch beat stage 1", "test all moved"],
                per_seed,
            ),
            "",
            f"Numbers moved on {len(moved)} of {len(results)} seeds.",
        ]
    )
    report = {"quick": args.quick, "seeds": seeds, "epochs": args.options.epochs, "results": results}
    return report, md


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=None, help="total budget (default: the recipe's own)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return ablation_main(
        "wb_selection",
        lambda args: [NAME],
        run_seed,
        summarise,
        argv,
        description=__doc__.splitlines()[0],
        add_flags=_flags,
    )


if __name__ == "__main__":
    main()
