"""CE's accuracy as the epoch budget grows on fmnist_lt: the budget where CE has converged.

Every fmnist_lt recipe spends the same total budget (``ltzoo.recipes.ce.FMNIST_EPOCHS``), so that budget
must be one where the baseline has stopped improving; otherwise the table compares undertrained models.

- CE (``ce_resnet32.fmnist_lt``) at every budget of ``--budgets`` (default 30 60 90 120 200). A budget
  rescales the recipe in proportion (``ltzoo.recipe.scale_stages``: warm-up included).
- Seed 0 at every budget; ``--seeds`` (default 0 1 2) at the smallest budget and at each candidate, to
  measure the seed spread the rule compares against.
- The rule, on **val** only: the smallest budget B whose seed-0 val top-1 is within the val seed spread
  (sample std over ``--seeds`` at B) of every larger budget's, i.e. more epochs no longer buy more
  than the noise between seeds. Test numbers are reported, never used.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.ce_budget      # full (hours on 2 cores)
    .venv/bin/python -m benchmarks.ce_budget --quick                 # plumbing check

Writes ``benchmarks/results/ce_budget.{json,md,png}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.common import (
    GROUPS,
    RESULTS_DIR,
    BenchmarkArgs,
    fmt_mean_std,
    markdown_table,
    mean_std,
    parse_benchmark_args,
    run_arms,
    run_record,
    train_seeded,
    write_results,
)

CE = "ce_resnet32.fmnist_lt"
DEFAULT_BUDGETS = (30, 60, 90, 120, 200)


def run_budget(budget: int, seed: int, args: BenchmarkArgs) -> dict[str, Any]:
    from ltzoo.registry import get_entry

    recipe = get_entry(CE).recipe()
    native = recipe.total_epochs
    print(f"[ce_budget] {budget} epochs seed {seed}", flush=True)
    if args.quick:
        limits: dict[str, Any] = {"epochs": 1, "steps_per_epoch": 2}
    else:
        limits = {} if budget == native else {"epochs": budget}  # the native budget is the zoo recipe: reused
    metrics = train_seeded(f"ce_{budget}ep.fmnist_lt", seed, args.work_dir, recipe=recipe, **limits)
    return run_record(metrics, budget=budget, seed=seed)


def pick_budget(curve: dict[int, float], spread: dict[int, float]) -> int | None:
    """The smallest budget whose val is within its seed spread of every larger budget's val, or None
    when no budget with a measured spread qualifies yet."""
    budgets = sorted(curve)
    for index, budget in enumerate(budgets):
        if budget not in spread:
            continue
        later = [curve[b] for b in budgets[index + 1 :]]
        if all(value - curve[budget] <= spread[budget] for value in later):
            return budget
    return None


def curve_plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seed0 = sorted((r for r in runs if r["seed"] == 0), key=lambda r: r["budget"])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    budgets = [r["budget"] for r in seed0]
    for split, style in (("val", "-o"), ("test", "--s")):
        for group, colour in (("all", "black"), ("few", "tab:red")):
            ax.plot(
                budgets, [r[split][group] for r in seed0], style, color=colour, markersize=4, label=f"{split} {group}"
            )
    ax.set_xlabel("total epochs (seed 0)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("CE on fmnist_lt: accuracy vs epoch budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budgets", type=int, nargs="+", default=list(DEFAULT_BUDGETS))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    # --seeds: the seeds trained at a candidate budget to measure its val seed spread; the curve is seed 0's.
    args = parse_benchmark_args(
        "ce_budget",
        argv,
        description=__doc__.splitlines()[0],
        add_flags=_flags,
        quick_help="2 budgets, 1 epoch of 2 steps, the first seed: a plumbing check",
    )
    budgets = sorted(args.options.budgets[:2] if args.quick else args.options.budgets)

    # Seed 0 along the curve, the longest runs first so that the two workers finish close together, and
    # the other seeds at the smallest budget, whose spread every candidate is first compared against.
    first_jobs = [(b, 0) for b in reversed(budgets)] + [(budgets[0], s) for s in args.seeds if s != 0]
    runs = run_arms(run_budget, first_jobs, args)
    curve = {r["budget"]: r["val"]["all"] for r in runs if r["seed"] == 0}

    # The seed spread is measured first at the smallest budget (cheap, and the noisiest point of the
    # curve); a larger budget is a candidate only if its remaining val gain is within the largest spread
    # measured so far, and it is picked only if that gain is within its own spread (3 seeds there).
    def measure_spread(budget: int) -> None:
        measured = {r["seed"] for r in runs if r["budget"] == budget}
        extra = [s for s in args.seeds if s not in measured]
        runs.extend(run_arms(run_budget, [(budget, s) for s in extra], args))
        spread[budget] = mean_std(r["val"]["all"] for r in runs if r["budget"] == budget)[1] or 0.0

    spread: dict[int, float] = {}
    measure_spread(budgets[0])
    picked = pick_budget(curve, spread)
    for budget in budgets[1:]:
        if picked is not None:
            break
        remaining_gain = max(curve[b] for b in budgets if b >= budget) - curve[budget]
        if remaining_gain > max(spread.values()):
            continue
        measure_spread(budget)
        picked = pick_budget(curve, spread)

    rows = []
    for budget in budgets:
        cell = [r for r in runs if r["budget"] == budget]
        seed0 = next(r for r in cell if r["seed"] == 0)
        rows.append(
            [
                budget,
                f"{seed0['val']['all']:.2f}",
                "-" if budget not in spread else f"{spread[budget]:.2f}",
                len(cell),
                *[fmt_mean_std(r["test"][g] for r in cell) for g in GROUPS],
                f"{seed0['train_time_s'] / 60:.1f}",
            ]
        )
    plot = RESULTS_DIR / ("ce_budget_quick.png" if args.quick else "ce_budget.png")
    curve_plot(runs, plot)
    verdict = (
        f"Picked: **{picked} epochs** (the smallest budget whose seed-0 val all is within its val seed spread "
        "of every larger budget's)."
        if picked is not None
        else "No budget qualified: CE's val still rises by more than its seed spread at the largest budget."
    )
    md = "\n".join(
        [
            "## CE on fmnist_lt: accuracy vs epoch budget"
            + (" (quick plumbing run: not a result)" if args.quick else ""),
            "",
            "Each budget rescales the CE recipe in proportion (warm-up included); model selection on val. The choice "
            "uses val only; test is reported.",
            "",
            markdown_table(
                [
                    "epochs",
                    "val all (seed 0)",
                    "val seed spread (std)",
                    "seeds",
                    *[f"test {g}" for g in GROUPS],
                    "train min (seed 0)",
                ],
                rows,
            ),
            "",
            verdict,
            "",
            f"![CE budget curve]({plot.name})",
        ]
    )
    report = {
        "quick": args.quick,
        "budgets": budgets,
        "val_curve_seed0": curve,
        "val_spread": spread,
        "picked_epochs": picked,
        "runs": runs,
    }
    write_results("ce_budget", report, md)
    print(md)
    return report


if __name__ == "__main__":
    main()
