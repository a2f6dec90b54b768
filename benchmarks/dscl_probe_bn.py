"""The frozen backbone's BatchNorm during DSCL's stage-2 probe, on fmnist_lt: which ``probe_bn`` val picks.

With PBSD the online encoder sees the 14-px patch crops in train mode right after the query views, so
its BN running statistics end up about half patch statistics; a probe with BN frozen (``"frozen"``,
ltzoo's earlier behaviour) then normalises val and test images with them. The ways out, compared here:

- ``"reestimate"``: re-estimate the statistics on standard-augmented training images before stage 2;
- ``"train"``: the official ``equal_lincls.py``, BN in train mode during the probe;
- ``"frozen"``: stage 1's statistics.

Arms: DSCL + PBSD, PBSD only (SCL + PBSD, the ablation's arm) and DSCL (no patches: the control).
Stage 1 is trained once per arm and seed; each option re-runs stage 2 only, from the checkpoint between
the stages (``ltzoo.engine.branch``; exactly what a full run of that recipe gives). The option is chosen
on **val** of seed 0, then confirmed on the mean val of every seed; test is reported, never used.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.dscl_probe_bn [--epochs 30] [--seeds 0 1 2]
    .venv/bin/python -m benchmarks.dscl_probe_bn --quick

Writes ``benchmarks/results/dscl_probe_bn.{json,md}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.common import (
    GROUPS,
    BenchmarkArgs,
    ablation_main,
    fmt_mean_std,
    markdown_table,
    mean_std,
    run_record,
    train_seeded,
)

OPTIONS = ("frozen", "reestimate", "train")
ARMS = {"dscl_pbsd": "DSCL + PBSD", "pbsd": "PBSD only (SCL + PBSD)", "dscl": "DSCL"}
BRANCH_STAGE = "representation"


def _recipe(arm: str, option: str, epochs: int | None) -> Any:
    from ltzoo.recipe import scale_stages
    from ltzoo.recipes.dscl import dscl_small

    recipe = dscl_small("fmnist_lt", pbsd=arm != "dscl", **({"alpha": "scl"} if arm == "pbsd" else {}))
    recipe = recipe.replace(method_args={**recipe.method_args, "probe_bn": option})
    return recipe.replace(stages=scale_stages(recipe.stages, epochs)) if epochs else recipe


def run_arm(arm: str, seed: int, args: BenchmarkArgs) -> list[dict[str, Any]]:
    """Stage 1 with the first option, then stage 2 alone for each other option."""
    limits: dict[str, Any] = {"epochs": 2, "steps_per_epoch": 2} if args.quick else {}
    budget = None if args.quick else args.options.epochs
    records = []
    first = train_seeded(
        f"{arm}_bn_{OPTIONS[0]}.fmnist_lt", seed, args.work_dir, recipe=_recipe(arm, OPTIONS[0], budget), **limits
    )
    records.append(run_record(first, arm=arm, option=OPTIONS[0], seed=seed))
    for option in OPTIONS[1:]:
        metrics = train_seeded(
            f"{arm}_bn_{option}.fmnist_lt",
            seed,
            args.work_dir,
            recipe=_recipe(arm, option, budget),
            branch_from=(Path(first["run_dir"]), BRANCH_STAGE),
            **limits,
        )
        records.append(run_record(metrics, arm=arm, option=option, seed=seed))
    print(
        f"[dscl_probe_bn] {arm} seed {seed}: " + ", ".join(f"{r['option']} val {r['val']['all']:.2f}" for r in records),
        flush=True,
    )
    return records


def choose(records: list[dict[str, Any]], arm: str, seeds: list[int]) -> dict[str, Any]:
    """The option with the best seed-0 val, and whether the mean val over the seeds agrees."""

    def val(option: str, seed_list: list[int]) -> float:
        return mean_std(
            r["val"]["all"] for r in records if r["arm"] == arm and r["option"] == option and r["seed"] in seed_list
        )[0] or float("-inf")

    first_seed = [seeds[0]]
    by_seed0 = max(OPTIONS, key=lambda option: val(option, first_seed))
    by_mean = max(OPTIONS, key=lambda option: val(option, seeds))
    return {
        "seed0_choice": by_seed0,
        "mean_choice": by_mean,
        "confirmed": by_seed0 == by_mean,
        "seed0_val": {o: val(o, first_seed) for o in OPTIONS},
        "mean_val": {o: val(o, seeds) for o in OPTIONS},
    }


def summarise(records_by_arm: dict[str, list[list[dict[str, Any]]]], args: BenchmarkArgs) -> tuple[dict[str, Any], str]:
    seeds = args.seeds
    # Seed-major, the order they were trained in; each job gave one record per option.
    records = [
        record for index in range(len(seeds)) for per_seed in records_by_arm.values() for record in per_seed[index]
    ]
    choices = {arm: choose(records, arm, seeds) for arm in args.options.arms}
    rows = []
    for arm in args.options.arms:
        for option in OPTIONS:
            runs = [r for r in records if r["arm"] == arm and r["option"] == option]
            mark = " (chosen on val)" if choices[arm]["seed0_choice"] == option else ""
            rows.append(
                [
                    ARMS[arm],
                    option + mark,
                    *[fmt_mean_std(r["test"][g] for r in runs) for g in GROUPS],
                    fmt_mean_std(r["val"]["all"] for r in runs),
                ]
            )
    verdicts = [
        f"- {ARMS[arm]}: seed {seeds[0]} val picks **{c['seed0_choice']}** "
        f"({', '.join(f'{o} {v:.2f}' for o, v in c['seed0_val'].items())}); the mean val over {len(seeds)} "
        f"seed(s) picks {c['mean_choice']} -> {'confirmed' if c['confirmed'] else 'NOT confirmed'}."
        for arm, c in choices.items()
    ]
    budget = args.options.epochs or _recipe("dscl", "frozen", None).total_epochs
    md = "\n".join(
        [
            "## DSCL stage 2: the frozen backbone's BatchNorm (probe_bn) on fmnist_lt"
            + (" (quick plumbing run: not a result)" if args.quick else ""),
            "",
            f"{len(seeds)} seed(s) {seeds}, {budget} epochs per run (stage 1 once per arm and seed, stage 2 per option "
            "from the checkpoint between the stages), model selection on val; test top-1 (%) as mean ± sample std.",
            "",
            markdown_table(["arm", "probe_bn", *[f"test {g}" for g in GROUPS], "val all"], rows),
            "",
            *verdicts,
        ]
    )
    report = {"quick": args.quick, "seeds": seeds, "epochs": budget, "runs": records, "choices": choices}
    return report, md


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=None, help="total budget (default: the recipes' own)")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return ablation_main(
        "dscl_probe_bn",
        lambda args: args.options.arms,
        run_arm,
        summarise,
        argv,
        description=__doc__.splitlines()[0],
        add_flags=_flags,
        quick_help="1 seed, 2 epochs of 2 steps: a plumbing check",
    )


if __name__ == "__main__":
    main()
