"""Accuracy of every method's fmnist_lt recipe over seeds, against a balanced upper bound.

Every ``*.fmnist_lt`` zoo entry is trained with its own recipe (all recipes spend the CE recipe's
epoch budget) for each seed; the table gives all/many/medium/few top-1 (%) on the test split as
mean ± std, and the gap closed towards an upper bound: CE trained on a *balanced* Fashion-MNIST
subset of the same size (2,478 images), same val and test, same budget:

    gap closed = (method − CE) / (upper bound − CE)   on overall top-1

A plot shows per-class test accuracy against training count (log axis) for all methods.

    .venv/bin/python -m benchmarks.accuracy            # 3 seeds, full budget (about an hour on 2 idle cores)
    .venv/bin/python -m benchmarks.accuracy --quick    # 1 seed, 1 epoch of 3 steps per stage

**Your own long-tailed data** ("which method should I use?"): ``--data imagefolder:PATH`` or
``--data splits:ROOT`` (what ``ltzoo train --data`` takes) trains every method's small recipe on it with
the settings derived from the data's size (as ``ltzoo train --data`` derives them, printed per recipe),
for ``--seeds``, and writes the same table to ``benchmarks/results/accuracy_<data name>.{json,md,png}``,
never over the fmnist_lt results. The balanced upper bound needs a balanced training set of the same
size drawn from the same source, which own data cannot provide: it is skipped, and the table says so.

    .venv/bin/python -m benchmarks.accuracy --data imagefolder:~/my_data --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    GROUPS,
    RESULTS_DIR,
    WORK_DIR,
    BenchmarkArgs,
    earlier_report,
    fmt_mean_std,
    markdown_table,
    mean_std,
    parse_benchmark_args,
    recipe_sha256,
    run_ablation,
    train_seeded,
)

UPPER_BOUND = "ce_resnet32.fmnist_balanced"


def balanced_fmnist(data_root: str | None = None) -> Any:
    """Fashion-MNIST with a balanced training subset of fmnist_lt's size; fmnist_lt's val and test."""
    import torch

    from ltzoo.data import LTDataset, TensorImageDataset, build_dataset
    from ltzoo.data.datasets import index_sha256
    from ltzoo.data.fmnist import SPLIT_SEED, locate_fashion_mnist
    from ltzoo.data.idx import read_idx

    lt = build_dataset("fmnist_lt", data_root)
    files = locate_fashion_mnist(data_root)
    images = torch.from_numpy(read_idx(files["train_images"]).copy()).unsqueeze(1)
    labels = read_idx(files["train_labels"]).astype(np.int64)
    val_bytes = {bytes(img.numpy()) for img in lt.val.images}
    size, classes = len(lt.train), lt.num_classes
    per_class = [size // classes + (1 if c < size % classes else 0) for c in range(classes)]
    rng = np.random.RandomState(SPLIT_SEED)
    chosen: list[int] = []
    for cls, n in enumerate(per_class):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        chosen += [i for i in idx.tolist() if bytes(images[i].numpy()) not in val_bytes][:n]
    chosen.sort()
    balanced = LTDataset(
        name="fmnist_balanced",
        train=TensorImageDataset(images[chosen], labels[chosen].tolist()),
        val=lt.val,
        test=lt.test,
        label_names=lt.label_names,
        info=lt.info,
        index_sha256=index_sha256({"dataset": "fmnist_balanced", "train": chosen}),
        source={"note": "balanced upper bound for the accuracy benchmark; fmnist_lt's val and test"},
    )
    # Score the upper bound on fmnist_lt's many/medium/few classes, so the columns compare like with like.
    balanced.shots = lt.shots
    return balanced


def train_one(name: str, seed: int, args: BenchmarkArgs) -> dict[str, Any]:
    """Train (or reuse) one seed of zoo entry ``name``, or of the balanced upper bound; with ``--data``,
    the entry's recipe derived for that data (as ``ltzoo train NAME --data SOURCE``)."""
    import ltzoo

    quick, source, work_dir = args.quick, args.options.data, args.work_dir
    limits: dict[str, Any] = {"steps_per_epoch": 3} if quick else {}
    if source is not None:
        plan = own_data_plan(name, source)
        print(f"[accuracy] {plan.name} seed {seed}\n{plan.describe()}", flush=True)
        return train_seeded(
            plan.name,
            seed,
            work_dir,
            recipe=plan.recipe,
            data=plan.data,
            extra_config=plan.extra_config,
            epochs=len(plan.recipe.stages) if quick else None,
            **limits,
        )
    if name == UPPER_BOUND:
        recipe = ltzoo.get_entry("ce_resnet32.fmnist_lt").recipe()
        limits["data"] = balanced_fmnist()
    else:
        recipe = ltzoo.get_entry(name).recipe()
    print(f"[accuracy] {name} seed {seed}", flush=True)
    return train_seeded(name, seed, work_dir, recipe=recipe, epochs=len(recipe.stages) if quick else None, **limits)


@functools.cache
def own_data_plan(name: str, source: str) -> Any:
    """``ltzoo train NAME --data SOURCE``'s plan (:func:`ltzoo.planner.plan.plan_training`), made once per process:
    planning loads the data, and a row's fingerprint is asked for more than once (kept rows, fresh rows)."""
    from ltzoo.planner.plan import plan_training

    return plan_training(name, data=source)


def ltzoo_names() -> list[str]:
    """Every fmnist_lt zoo entry: the rows of the fmnist_lt table (the upper bound aside)."""
    import ltzoo

    return ltzoo.list_models("*.fmnist_lt")


def _ce_recipe() -> Any:
    import ltzoo

    return ltzoo.get_entry("ce_resnet32.fmnist_lt").recipe()


def row_recipe_sha256(name: str, data_source: str | None) -> str:
    """The fingerprint of the recipe that row ``name`` trains (:func:`benchmarks.common.recipe_sha256`)."""
    import ltzoo

    if data_source is not None:
        recipe = own_data_plan(name, data_source).recipe
    else:
        recipe = _ce_recipe() if name == UPPER_BOUND else ltzoo.get_entry(name).recipe()
    return recipe_sha256(recipe, row="balanced upper bound" if name == UPPER_BOUND else name)


def earlier_rows(result_name: str, quick: bool, data_source: str | None, names: list[str]) -> dict[str, dict[str, Any]]:
    """The rows ``names`` of the results already written under ``result_name`` whose recipe is still the
    registry's (same fingerprint); rows written before fingerprints existed, or by another recipe, are dropped."""
    rows = earlier_report(result_name, quick, RESULTS_DIR).get("rows", {})
    kept = {}
    for name in names:
        row = rows.get(name)
        if row and row.get("recipe_sha256") and row["recipe_sha256"] == row_recipe_sha256(name, data_source):
            kept[name] = row
    return kept


def by_seed(row: dict[str, Any], group: str) -> dict[int, float]:
    """A table row's test accuracy of ``group`` per seed: rows are compared seed by seed (same data order and init)."""
    return {seed: test[group] for seed, test in zip(row["seeds"], row["test"], strict=True)}


def target_verdicts(rows: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Issue 18's targets on this table: [target, measured, verdict] rows; a row not in the table is "not measured"."""
    ce, flagship, dscl, scl = (rows.get(f"{m}_resnet32.fmnist_lt") for m in ("ce", "dscl_pbsd", "dscl", "scl"))

    def mean(row: dict[str, Any], group: str) -> float:
        return float(mean_std(r[group] for r in row["test"])[0])

    def seeds_text(*rs: dict[str, Any]) -> str:
        return "/".join(str(len(r["test"])) for r in rs) + " seed(s)"

    verdicts = []
    methods = {n: r for n, r in rows.items() if n not in ("ce_resnet32.fmnist_lt", UPPER_BOUND)}
    if ce and methods:
        below = [
            f"{n.split('_resnet32')[0]} {mean(r, 'few'):.1f}"
            for n, r in methods.items()
            if mean(r, "few") < mean(ce, "few")
        ]
        verdicts.append(
            [
                f"every method >= CE on few-shot ({len(methods)} methods in the table)",
                f"CE few {mean(ce, 'few'):.1f}; below: {', '.join(below) or 'none'}",
                "met" if not below else "NOT met",
            ]
        )
    else:
        verdicts.append(["every method >= CE on few-shot", "-", "not measured"])
    if ce and flagship:
        spreads = " vs ".join(fmt_mean_std(r["all"] for r in row["test"]) for row in (flagship, ce))
        verdicts.append(
            [
                "DSCL + PBSD >= CE overall",
                f"{spreads} ({seeds_text(flagship, ce)})",
                "met" if mean(flagship, "all") >= mean(ce, "all") else "NOT met",
            ]
        )
    else:
        verdicts.append(["DSCL + PBSD >= CE overall", "-", "not measured"])
    closed = {n: r.get("gap_closed_pct") for n, r in methods.items() if r.get("gap_closed_pct") is not None}
    if closed:
        best = max(closed, key=closed.get)
        verdicts.append(
            [
                "the best method closes >= 60 % of the CE -> upper-bound gap",
                f"{best.split('_resnet32')[0]} {closed[best]:.1f} %",
                "met" if closed[best] >= 60 else "NOT met",
            ]
        )
    else:
        verdicts.append(["the best method closes >= 60 % of the CE -> upper-bound gap", "-", "not measured"])
    if dscl and scl:
        dscl_all, scl_all = by_seed(dscl, "all"), by_seed(scl, "all")
        common = sorted(set(dscl_all) & set(scl_all))
        wins = sum(dscl_all[s] > scl_all[s] for s in common)
        verdicts.append(
            [
                "DSCL > SCL on every seed",
                f"{wins}/{len(common)} seeds",
                "met" if common and wins == len(common) else "NOT met",
            ]
        )
    else:
        verdicts.append(["DSCL > SCL on every seed", "-", "not measured"])
    verdicts.append(pbsd_gain(flagship, dscl))
    return verdicts


def pbsd_gain(flagship: dict[str, Any] | None, dscl: dict[str, Any] | None) -> list[str]:
    """What PBSD adds to DSCL, seed by seed (same seed = same data order and init): the issue asks for it
    "with its spread", not against a threshold, so its verdict is "reported"."""
    target = "what PBSD adds to DSCL (DSCL + PBSD - DSCL, paired seeds)"
    common = sorted(set(flagship["seeds"]) & set(dscl["seeds"])) if flagship and dscl else []
    if not common:
        return [target, "-", "not measured"]

    def gains(group: str) -> str:
        with_pbsd, without = by_seed(flagship, group), by_seed(dscl, group)
        diffs = [with_pbsd[s] - without[s] for s in common]
        mean, std = mean_std(diffs)
        return f"{group} {mean:+.2f}" + (f" ± {std:.2f}" if len(diffs) > 1 else "")

    return [target, f"{', '.join(gains(g) for g in GROUPS)} pt ({len(common)} seed(s))", "reported"]


def per_class_curves(rows: dict[str, dict[str, Any]], counts: list[int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each row's (training count, test top-1 %) per class, mean over seeds, in order of training count.

    A line joins its points in the order given: in label order a data set whose labels are not sorted by count
    (own data, or fmnist_lt's descending counts on an ascending axis) zigzags back and forth along the count
    axis. A stable sort keeps classes of equal count in label order, so the drawing is the same on every run."""
    order = np.argsort(np.asarray(counts), kind="stable")
    x = np.asarray(counts, dtype=float)[order]
    return {name: (x, np.nanmean(np.array(row["per_class"], dtype=float), axis=0)[order]) for name, row in rows.items()}


def per_class_figure(rows: dict[str, dict[str, Any]], counts: list[int], data_label: str = "fmnist_lt") -> Any:
    """The per-class plot as a matplotlib Figure (Agg): one line per row, drawn along the count axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.get_cmap("tab20").colors  # 12 lines: tab10 would give two methods one colour
    for index, (name, (x, per_class)) in enumerate(per_class_curves(rows, counts).items()):
        upper = name == UPPER_BOUND
        ax.plot(
            x,
            per_class,
            "--" if upper else "-",
            color="black" if upper else colours[index % len(colours)],
            marker="o",
            markersize=3,
            label="CE, balanced (upper bound)" if upper else name.split(".")[0],
        )
    ax.set_xscale("log")
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("test top-1 of the class (%)")
    ax.set_title(f"{data_label}: per-class accuracy vs training count (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncols=2)
    fig.tight_layout()
    return fig


def per_class_plot(
    rows: dict[str, dict[str, Any]], counts: list[int], path: Path, data_label: str = "fmnist_lt"
) -> None:
    import matplotlib.pyplot as plt

    fig = per_class_figure(rows, counts, data_label)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# The time target's machine: 2 cores, one 1-thread training run per core (the default --jobs 2 --threads 1).
RUNS_AT_ONCE = 2


def train_minutes_per_seed(row: dict[str, Any]) -> float:
    """A row's training minutes per seed: the mean over its seeds of the trainer's ``train_time_s`` (wall clock of
    one run's stages, per-epoch validation included, summed over resumes). The table's "train min/seed" column
    and the time target's line both read it from here, so the two cannot disagree."""
    return float(mean_std(row["train_time_s"])[0]) / 60


def benchmark_minutes(row: dict[str, Any]) -> float:
    """Minutes a row's benchmark (all its seeds) takes on the 2 cores: its seeds go two at a time, so it lasts
    ceil(seeds / 2) rounds of one seed's run. Not the seeds' sum / 2: one run uses one core, so a 1-seed row
    takes its run's full time (halving it reported a 30-minute run as 15)."""
    return train_minutes_per_seed(row) * -(-len(row["train_time_s"]) // RUNS_AT_ONCE)


def budget_text(rows: dict[str, dict[str, Any]]) -> str:
    """The time target's line, from the table's own per-seed minutes (:func:`train_minutes_per_seed`)."""
    slowest = max(rows, key=lambda name: benchmark_minutes(rows[name]))
    row, minutes = rows[slowest], benchmark_minutes(rows[slowest])
    seeds = len(row["train_time_s"])
    total = sum(train_minutes_per_seed(r) * len(r["train_time_s"]) for r in rows.values())
    return (
        f"Target (every method's benchmark, its seeds, within 60 min on 2 cores): slowest {slowest.split('.')[0]} "
        f"{train_minutes_per_seed(row):.1f} min/seed (its train min/seed in the table) x {seeds} seed(s), "
        f"{RUNS_AT_ONCE} at a time = {minutes:.1f} min -> {'met' if minutes <= 60 else 'NOT met'}; "
        f"all {len(rows)} rows together {total:.0f} min of training, "
        f"about {total / RUNS_AT_ONCE:.0f} min on the 2 cores -> "
        f"{'within' if total / RUNS_AT_ONCE <= 60 else 'over'} one hour. Measured: each run's training time as the "
        "trainer records it (wall clock of its stages, per-epoch validation included), not this invocation's wall time."
    )


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", nargs="*", help="zoo names to run (default: every *.fmnist_lt entry)")
    parser.add_argument(
        "--data",
        metavar="SOURCE",
        help="your own long-tailed data (imagefolder:PATH or splits:ROOT): "
        "every method's small recipe derived for it; results go to accuracy_<data name>.*",
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_benchmark_args(
        "accuracy",
        argv,
        description=__doc__.splitlines()[0],
        add_flags=_flags,
        quick_help="1 seed, 1 epoch of 3 steps per stage (plumbing check)",
        work_dirs=(WORK_DIR / "accuracy" / "full", WORK_DIR / "accuracy" / "quick"),
    )

    names = args.options.only or ltzoo_names()
    seeds = args.seeds
    result_name, data_label = "accuracy", "fmnist_lt"
    from ltzoo.data.sources import SourceSpec

    data_source = args.options.data
    if data_source:
        from ltzoo.data import build_dataset as _build

        spec = SourceSpec.parse(data_source)
        spec.validate()
        data_label = spec.display_name
        result_name = "accuracy_" + "".join(c if c.isalnum() else "_" for c in data_label).strip("_")
        _build(spec.name)  # a bad source fails here, before any training, with the data layer's message
        args = dataclasses.replace(args, work_dir=args.work_dir / result_name)
    rows_names = names if data_source else [*names, UPPER_BOUND]
    started = time.time()
    # Rows of an earlier invocation stay in the table while their recipe is unchanged: on 2 cores one
    # invocation per few rows is the unit of work, and each lands in the report as it finishes.
    every_name = ltzoo_names() if not data_source else names

    def summarise(metrics_by_name: dict[str, list[dict[str, Any]]], args: BenchmarkArgs) -> tuple[dict[str, Any], str]:
        elapsed = time.time() - started
        # Read when this invocation ends, so that rows written meanwhile by another invocation are kept too.
        earlier = earlier_rows(
            result_name, args.quick, data_source, [n for n in [*every_name, UPPER_BOUND] if n not in rows_names]
        )
        fresh = {
            name: {
                "seeds": list(seeds),
                "recipe_sha256": row_recipe_sha256(name, data_source),
                "test": [{g: m["test"][g] for g in GROUPS} for m in runs],
                "val": [{g: m["val"][g] for g in GROUPS} for m in runs],
                "per_class": [m["test"]["per_class"] for m in runs],
                "train_time_s": [m["train_time_s"] for m in runs],
                "run_dir": [m["run_dir"] for m in runs],
            }
            for name, runs in metrics_by_name.items()
        }
        order = [*every_name, UPPER_BOUND, *fresh]  # the registry's order, the upper bound last
        rows = {name: ({**earlier, **fresh})[name] for name in dict.fromkeys(order) if name in fresh or name in earlier}
        return accuracy_report(rows, seeds, result_name, data_label, data_source, args.quick, elapsed)

    return run_ablation(result_name, args, rows_names, train_one, summarise)


def accuracy_table(
    rows: dict[str, dict[str, Any]], seeds: list[int], data_source: str | None
) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows; sets each row's ``gap_closed_pct`` (the targets read it from the row)."""
    ce_all, _ = (
        mean_std(r["all"] for r in rows["ce_resnet32.fmnist_lt"]["test"])
        if "ce_resnet32.fmnist_lt" in rows
        else (None, None)
    )
    ub_all, _ = mean_std(r["all"] for r in rows[UPPER_BOUND]["test"]) if UPPER_BOUND in rows else (None, None)
    table_rows = []
    for name, row in rows.items():
        mean_all, _ = mean_std(r["all"] for r in row["test"])
        closed = None
        if (
            name not in ("ce_resnet32.fmnist_lt", UPPER_BOUND)
            and ub_all is not None
            and ce_all is not None
            and ub_all != ce_all
        ):
            closed = 100 * (mean_all - ce_all) / (ub_all - ce_all)
        row["gap_closed_pct"] = closed
        table_rows.append(
            [
                name.split(".")[0] + (" (balanced upper bound)" if name == UPPER_BOUND else ""),
                ", ".join(map(str, row.get("seeds", seeds))),
                *[fmt_mean_std(r[g] for r in row["test"]) for g in GROUPS],
                "-" if closed is None else f"{closed:.1f} %",
                f"{train_minutes_per_seed(row):.1f}",
            ]
        )
    header = ["method", "seeds", *[f"{g} (test %)" for g in GROUPS], "gap closed to upper bound", "train min/seed"]
    if data_source:  # no upper bound: drop its column
        header.pop(-2)
        table_rows = [row[:-2] + row[-1:] for row in table_rows]
    return header, table_rows


def report_markdown(
    rows: dict[str, dict[str, Any]],
    seeds: list[int],
    data_label: str,
    data_source: str | None,
    quick: bool,
    elapsed: float,
    plot_name: str,
) -> str:
    """The report's markdown from the rows alone (no data, no training): the table, the time target, the targets."""
    header, table_rows = accuracy_table(rows, seeds, data_source)
    upper_text = (
        "Upper bound: CE on a balanced Fashion-MNIST subset of the same size (2,478 images), same val/test and budget. "
        "Gap closed = (method − CE) / (upper bound − CE) on overall top-1."
        if not data_source
        else "No balanced upper bound: it needs a balanced training set of the same size from the same source, "
        "which this data cannot provide (so no gap-closed column). Each recipe's epochs, batch and data-dependent "
        "settings are derived from the data's size, as `ltzoo train --data` derives them."
    )
    targets_md = ""
    if not data_source:
        targets_md = (
            "### Targets (issue 18; a miss is reported, not hidden)\n\n"
            + markdown_table(["target", "measured (test %)", "verdict"], target_verdicts(rows))
            + "\n\nThe targets are set for 3 seeds: with fewer seeds in a row a verdict is provisional, and a "
            "margin smaller than CE's seed spread decides nothing.\n\n"
        )
    missing = [] if data_source else [n for n in [*ltzoo_names(), UPPER_BOUND] if n not in rows]
    missing_text = (
        (
            f"Not in the table: {', '.join(n.split('.')[0] for n in missing)}: no run of their current recipe "
            "has been collected (`python -m benchmarks.accuracy --only NAME ...` trains, or finds, and adds a row; "
            "rows of earlier invocations are kept while their recipe is unchanged).\n\n"
        )
        if missing
        else ""
    )
    budget_label = (
        "quick smoke budget"
        if quick
        else "each recipe at the shared CE budget"
        if not data_source
        else "derived recipes"
    )
    return (
        f"## Accuracy on {data_label} (mean ± std over each row's seeds, {budget_label})\n\n"
        + markdown_table(header, table_rows)
        + f"\n\n{upper_text} Models selected on val. "
        f"Wall time of this invocation: {elapsed / 60:.1f} min (finished runs under runs/ are reused).\n\n"
        f"{budget_text(rows)}\n\n" + missing_text + targets_md + f"![per-class accuracy]({plot_name})\n"
    )


def accuracy_report(
    rows: dict[str, dict[str, Any]],
    seeds: list[int],
    result_name: str,
    data_label: str,
    data_source: str | None,
    quick: bool,
    elapsed: float,
) -> tuple[dict[str, Any], str]:
    """The table (gap closed to the upper bound, training minutes), the per-class plot and the report."""
    from ltzoo.data import build_dataset
    from ltzoo.data.sources import SourceSpec

    counts = build_dataset(SourceSpec.parse(data_source).name if data_source else "fmnist_lt").class_counts
    plot = RESULTS_DIR / (f"{result_name}_quick_per_class.png" if quick else f"{result_name}_per_class.png")
    md = report_markdown(rows, seeds, data_label, data_source, quick, elapsed, plot.name)
    per_class_plot(rows, counts, plot, data_label)
    budget = None if data_source else _ce_recipe().total_epochs
    report = {
        "quick": quick,
        "seeds": seeds,
        "data": data_label,
        "budget_epochs": budget,
        "elapsed_s": elapsed,
        "class_counts": counts,
        "rows": rows,
        "benchmark_minutes_per_method": {name: benchmark_minutes(row) for name, row in rows.items()},
    }
    return report, md


if __name__ == "__main__":
    main()
