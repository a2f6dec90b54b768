"""ltzoo's small-scale settings of the contrastive recipes, chosen on val: a one-factor-at-a-time sweep.

The papers' settings are for ImageNet-scale views; on fmnist_lt's 28-px garments they are ltzoo's own
choice to make, on val. Around each recipe's current setting ("base"), one factor changes at a time:

- view family: RandomResizedCrop with area scale (0.2-1), (0.5-1), (0.8-1), or the standard pad-crop + flip
  (SCL, DSCL, DSCL + PBSD, and the synergy's SupCon view; ICCL mixes standard-augmented images, so it
  has no contrastive crop to choose);
- temperature: 0.07, 0.1, 0.2 (the base's value included);
- stage-1 learning rate: x0.5, x1, x2;
- stage split: 80/20 (base) or 90/10 (two-stage recipes; the synergy trains in one stage);
- PBSD patch size (DSCL + PBSD): half (base) or three quarters of the view side.

(DSCL's stage-2 BatchNorm option is chosen in ``benchmarks.dscl_probe_bn``.) ``--factors`` / ``--values``
prune the grid: on 2 cores the flagship gets the whole grid and the other recipes the values that could
change their verdict (the results list the values tried). Every run is one seed (``--seeds``, default 0)
at the same total budget (``--epochs``), selected on **val**; each factor's winner is the best val of its
values, and the winners combined are trained once more to check that they still beat the base on val.
Test is reported, never used. Every val number goes to ``benchmarks/results/recipe_sweep.{json,md}``.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.recipe_sweep --recipes dscl_pbsd_resnet32.fmnist_lt --epochs 30
    .venv/bin/python -m benchmarks.recipe_sweep --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from benchmarks.common import (
    GROUPS,
    RESULTS_DIR,
    BenchmarkArgs,
    markdown_table,
    parse_benchmark_args,
    run_arms,
    run_record,
    train_seeded,
    write_results,
)

Variant = Callable[[Any], Any]
RECIPES = (
    "dscl_pbsd_resnet32.fmnist_lt",
    "dscl_resnet32.fmnist_lt",
    "scl_resnet32.fmnist_lt",
    "iccl_resnet32.fmnist_lt",
    "scl_rsg_ldam_resnet32.fmnist_lt",
)
# Methods whose contrastive views take ``view_crop`` / ``view_scale_min`` (the synergy: its SupCon view).
VIEW_METHODS = ("scl", "dscl", "dscl_pbsd", "scl_rsg_ldam")


def _args(**changes: Any) -> Variant:
    return lambda recipe: recipe.replace(method_args={**recipe.method_args, **changes})


def _lr(factor: float) -> Variant:
    def change(recipe: Any) -> Any:
        first, *rest = recipe.stages
        return recipe.replace(stages=[dataclasses.replace(first, lr=first.lr * factor), *rest])

    return change


def _split(first_fraction: float) -> Variant:
    def change(recipe: Any) -> Any:
        total = recipe.total_epochs
        first, second = recipe.stages
        epochs1 = round(total * first_fraction)
        ratio = (total - epochs1) / second.epochs
        milestones = tuple(sorted({max(1, min(total - epochs1 - 1, round(m * ratio))) for m in second.milestones}))
        return recipe.replace(
            stages=[
                dataclasses.replace(first, epochs=epochs1),
                dataclasses.replace(second, epochs=total - epochs1, milestones=milestones),
            ]
        )

    return change


def factors(name: str, recipe: Any) -> dict[str, dict[str, Variant]]:
    """``{factor: {value: change}}``; a change of ``None``-like identity is the base and is left out."""
    args = recipe.method_args
    grid: dict[str, dict[str, Variant]] = {}
    if recipe.method in VIEW_METHODS:  # ICCL's views are the standard augmentation, mixed: no crop to choose
        grid["views"] = {
            "rrc_0.2": _args(view_crop="rrc", view_scale_min=0.2),
            "rrc_0.5": _args(view_crop="rrc", view_scale_min=0.5),
            "rrc_0.8": _args(view_crop="rrc", view_scale_min=0.8),
            "padcrop": _args(view_crop="padcrop"),
        }
    grid["temperature"] = {f"tau_{t}": _args(temperature=t) for t in (0.07, 0.1, 0.2)}
    grid["lr"] = {"lr_x0.5": _lr(0.5), "lr_x1": lambda r: r, "lr_x2": _lr(2.0)}
    if len(recipe.stages) == 2:  # the synergy trains in one stage: nothing to split
        grid["split"] = {"split_80_20": _split(0.8), "split_90_10": _split(0.9)}
    if args.get("pbsd_weight"):
        grid["patch"] = {"patch_half": _args(patch_size=14), "patch_3q": _args(patch_size=21)}
    return grid


def base_value(factor: str, recipe: Any) -> str:
    """The name of the base recipe's own value of ``factor`` (trained once, as the base run)."""
    args = recipe.method_args
    if factor == "views":
        if args.get("view_crop") == "padcrop":
            return "padcrop"
        return f"rrc_{args.get('view_scale_min') or 0.2}"
    if factor == "temperature":
        return f"tau_{args['temperature']}"
    if factor == "lr":
        return "lr_x1"
    if factor == "split":
        total = recipe.total_epochs
        return "split_90_10" if recipe.stages[0].epochs / total >= 0.85 else "split_80_20"
    return "patch_half" if args.get("patch_size", 0) in (0, 14) else "patch_3q"


# (zoo name, label, [(factor, value), ...]): one run of the sweep, the base recipe with those changes.
SweepRun = tuple[str, str, list[tuple[str, str]]]


def run_variant(variant: SweepRun, seed: int, args: BenchmarkArgs) -> dict[str, Any]:
    from ltzoo.recipe import scale_stages
    from ltzoo.registry import get_entry

    name, label, changes = variant
    epochs = args.options.epochs
    recipe = get_entry(name).recipe()
    if epochs:
        recipe = recipe.replace(stages=scale_stages(recipe.stages, epochs))
    grid = factors(name, recipe)
    for factor, value in changes:
        recipe = grid[factor][value](recipe)
    limits: dict[str, Any] = {"epochs": 2, "steps_per_epoch": 2} if args.quick else {}
    metrics = train_seeded(
        f"{name.split('.')[0]}_sweep_{label}.fmnist_lt", seed, args.work_dir, recipe=recipe, **limits
    )
    print(f"[recipe_sweep] {name} {label}: val {metrics['val']['all']:.2f}", flush=True)
    return {**run_record(metrics, recipe=name, label=label, seed=seed), "changes": changes}


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--epochs", type=int, default=None, help="total budget of every run (default: the recipe's)")
    parser.add_argument("--factors", nargs="*", help="only these factors (default: all)")
    parser.add_argument(
        "--values",
        nargs="*",
        help="only these values of the factors swept (default: all); the "
        "base's own value is always in (the base run): a pruned grid, e.g. the values that won "
        "for the flagship, tried on another recipe",
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_benchmark_args(
        "recipe_sweep",
        argv,
        description=__doc__.splitlines()[0],
        add_flags=_flags,
        default_seeds=(0,),
        quick_help="2 epochs of 2 steps: a plumbing check",
    )
    if len(args.seeds) != 1:
        raise SystemExit("recipe_sweep compares the values of a factor on one seed: give one --seeds value")
    (seed,) = args.seeds

    epochs, only = args.options.epochs, args.options.factors
    # Recipes swept by an earlier invocation at the same budget stay in the results: an invocation per recipe
    # (or per few) is a sensible unit of work on 2 cores, and each lands in the report as it finishes.
    report: dict[str, Any] = {
        "quick": args.quick,
        "epochs": epochs,
        "seed": seed,
        "recipes": earlier_recipes(args.quick, epochs, seed),
    }
    plans = {name: sweep_plan(name, epochs, only, args.options.values) for name in args.options.recipes}
    # Every recipe's runs in one batch of jobs, then every recipe's combined run: the workers stay busy across
    # recipes instead of idling at the end of each one.
    sweep = [(run, seed) for plan in plans.values() for run in plan.runs]
    done: dict[str, dict[str, Any]] = {name: {} for name in plans}
    for run in run_arms(run_variant, sweep, args):
        done[run["recipe"]][run["label"]] = run
    combined = {name: plan.combined(done[name]) for name, plan in plans.items()}
    extra = [((name, "combined", changes), seed) for name, changes in combined.items() if len(changes) > 1]
    for run in run_arms(run_variant, extra, args) if extra else []:
        done[run["recipe"]]["combined"] = run
    for name, plan in plans.items():
        report["recipes"][name] = {
            "runs": done[name],
            "winners": plan.winners(done[name]),
            "combined": combined[name],
            "grid": {factor: list(values) for factor, values in plan.grid.items()},
            "base_values": plan.bases,
        }
    md = render(report)
    write_results("recipe_sweep", report, md)
    print(md)
    return report


@dataclasses.dataclass
class SweepPlan:
    """One recipe's one-factor-at-a-time grid around its base, and how its winners are read off the runs."""

    name: str
    grid: dict[str, dict[str, Variant]]
    bases: dict[str, str]

    @property
    def runs(self) -> list[SweepRun]:
        runs: list[SweepRun] = [(self.name, "base", [])]
        for factor, values in self.grid.items():
            runs += [(self.name, value, [(factor, value)]) for value in values if value != self.bases[factor]]
        return runs

    def winners(self, runs: dict[str, dict[str, Any]]) -> dict[str, str]:
        """Each factor's best val (the base's value on a tie)."""
        best = {}
        for factor, values in self.grid.items():
            scored = {value: runs["base" if value == self.bases[factor] else value]["val"]["all"] for value in values}
            best[factor] = max(scored, key=lambda v: (scored[v], v == self.bases[factor]))
        return best

    def combined(self, runs: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
        """The winning values that differ from the base (trained together when there are two or more)."""
        return [(factor, value) for factor, value in self.winners(runs).items() if value != self.bases[factor]]


def sweep_plan(name: str, epochs: int | None, only: list[str] | None, values: list[str] | None) -> SweepPlan:
    from ltzoo.recipe import scale_stages
    from ltzoo.registry import get_entry

    recipe = get_entry(name).recipe()
    if epochs:
        recipe = recipe.replace(stages=scale_stages(recipe.stages, epochs))
    grid = {f: v for f, v in factors(name, recipe).items() if not only or f in only}
    bases = {factor: base_value(factor, recipe) for factor in grid}
    if values:
        grid = {
            f: {v: change for v, change in options.items() if v in values or v == bases[f]}
            for f, options in grid.items()
        }
        grid = {f: options for f, options in grid.items() if len(options) > 1}
        bases = {f: bases[f] for f in grid}
    return SweepPlan(name, grid, bases)


def earlier_recipes(quick: bool, epochs: int | None, seed: int) -> dict[str, Any]:
    """The recipes of the results file already written at this budget and seed (none after a quick run, another
    budget or another seed)."""
    path = RESULTS_DIR / ("recipe_sweep_quick.json" if quick else "recipe_sweep.json")
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    if earlier.get("epochs") != epochs or earlier.get("seed", 0) != seed:
        return {}
    return {name: entry for name, entry in earlier.get("recipes", {}).items() if "grid" in entry}


def adopted(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """The changes a sweep hands to the recipe: of each factor's winning change alone and the winners combined,
    the one with the best val (the single change on a tie); none when nothing beats the base on val.

    Taking the best *run*, not every factor's winner, is what the flagship needed: its three winners combined
    (val 73.6) beat the base (71.5) but lost to the view change alone (76.7)."""
    runs, base = entry["runs"], entry["runs"]["base"]["val"]["all"]
    candidates = [
        (runs[value]["val"]["all"], 1, [(factor, value)])
        for factor, value in entry["winners"].items()
        if value != entry["base_values"][factor]
    ]
    if "combined" in runs:
        candidates.append((runs["combined"]["val"]["all"], 0, [tuple(change) for change in entry["combined"]]))
    best = max(candidates, key=lambda candidate: candidate[:2], default=None)
    return best[2] if best is not None and best[0] > base else []


def render(report: dict[str, Any]) -> str:
    sections = []
    for name, entry in report["recipes"].items():
        runs, winners, bases = entry["runs"], entry["winners"], entry["base_values"]
        rows = []
        for factor, values in entry["grid"].items():
            for value in values:
                run = runs["base" if value == bases[factor] else value]
                rows.append(
                    [
                        factor,
                        value + (" (base)" if value == bases[factor] else ""),
                        f"{run['val']['all']:.2f}",
                        *[f"{run['test'][g]:.2f}" for g in GROUPS],
                        "winner" if winners[factor] == value else "",
                    ]
                )
        if "combined" in runs:
            run = runs["combined"]
            rows.append(
                [
                    "combined",
                    ", ".join(v for _, v in entry["combined"]),
                    f"{run['val']['all']:.2f}",
                    *[f"{run['test'][g]:.2f}" for g in GROUPS],
                    "beats base on val" if run["val"]["all"] > runs["base"]["val"]["all"] else "does NOT beat base",
                ]
            )
        changes = adopted(entry)
        verdict = (
            f"Adopted: {', '.join(value for _, value in changes)}."
            if changes
            else "Adopted: nothing (no change beat the base on val)."
        )
        sections += [
            f"### {name}",
            "",
            markdown_table(
                ["factor", "value", f"val all (seed {report['seed']})", *[f"test {g}" for g in GROUPS], ""], rows
            ),
            "",
            verdict,
            "",
        ]
    return "\n".join(
        [
            f"## Small-scale settings chosen on val (one factor at a time, seed {report['seed']})"
            + (" (quick plumbing run: not a result)" if report["quick"] else ""),
            "",
            f"Every run: seed {report['seed']}, {report['epochs'] or 'the recipe'} epochs in total, selection on val. "
            "A factor's winner is its best val; test is shown for the record and played no part. Each recipe's "
            "base is the recipe as it was when it was swept; what the sweep adopted (`adopted`: the best val of the "
            "winning changes alone and combined) is the zoo's recipe now, so a new sweep sweeps around it. Grids are "
            "pruned per recipe: the values listed are the values tried.",
            "",
            *sections,
        ]
    )


if __name__ == "__main__":
    main()
