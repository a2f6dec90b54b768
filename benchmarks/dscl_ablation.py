"""DSCL ablation on fmnist_lt: CE, SCL, DSCL, PBSD only (SCL + PBSD), DSCL + PBSD.

The supplementary of the DSCL paper (Table 2/3) reports on ImageNet-LT the ordering
SCL 51.2 < DSCL 52.6 < PBSD 56.3 < DSCL + PBSD 57.7; this checks whether it holds on fmnist_lt.

- Every arm trains with the real trainer at the same total epoch budget (the CE fmnist_lt recipe's
  epochs; the contrastive arms split it 24 + 6 between representation and classifier stages),
  for each seed (3 by default); model selection on val; test all / many / medium / few reported as
  mean +- sample std over seeds.
- SCL is the DSCL loss with alpha = 1 / (|P| + 1) (``alpha="scl"``), which is exactly SCL over the
  same candidates (query batch, key batch, queue); "PBSD only" is SCL + PBSD, as in the paper.
- Cost relative to CE, measured after the training runs in a fresh process per arm, alone, on prepared
  batches: median time of one training step (forward, backward, SGD step, momentum update) of the first stage, and the
  peak resident memory that model, objective, optimiser and the steps add to the process (Linux
  VmHWM after resetting it, minus VmRSS before building them). The data transform time per batch
  is reported separately (the multi-view transform runs in a loader worker during training).

All work runs with one intra-op thread (``--threads``): on the shared 2-core machine two threads per
process oversubscribe the cores and small convolutions get far slower.

    nice -n 10 .venv/bin/python -m benchmarks.dscl_ablation              # full: 5 arms x 3 seeds
    .venv/bin/python -m benchmarks.dscl_ablation --quick                 # plumbing check, a few minutes

Run directories go under ``--work-dir`` (default ``runs/benchmarks/dscl_ablation``); finished runs are
reused and interrupted ones resumed. Writes ``benchmarks/results/dscl_ablation.{json,md}``
(``dscl_ablation_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import (
    GROUPS,
    BenchmarkArgs,
    ablation_main,
    fmt_mean_std,
    markdown_table,
    run_record,
    summary_by_group,
    train_seeded,
)

PAPER_IMAGENET_LT = {"scl": 51.2, "dscl": 52.6, "pbsd": 56.3, "dscl_pbsd": 57.7}  # supp. Table 2, top-1
ORDER = ("scl", "dscl", "pbsd", "dscl_pbsd")


def _recipe(arm: str) -> Any:
    from ltzoo.recipes.dscl import dscl_small
    from ltzoo.registry import get_entry

    makers: dict[str, Callable[[], Any]] = {
        "ce": lambda: get_entry("ce_resnet32.fmnist_lt").recipe(),
        "scl": lambda: dscl_small("fmnist_lt", pbsd=False, alpha="scl"),
        "dscl": lambda: get_entry("dscl_resnet32.fmnist_lt").recipe(),
        "pbsd": lambda: dscl_small("fmnist_lt", pbsd=True, alpha="scl"),
        "dscl_pbsd": lambda: get_entry("dscl_pbsd_resnet32.fmnist_lt").recipe(),
    }
    return makers[arm]()


ARMS = {
    "ce": "CE (instance sampling)",
    "scl": "SCL (alpha = 1/(|P|+1))",
    "dscl": "DSCL (alpha = 1/9)",
    "pbsd": "PBSD only (SCL + PBSD)",
    "dscl_pbsd": "DSCL + PBSD",
}


# ----- cost per step -------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS


def measure_step(arm: str, steps: int, warmup: int, threads: int) -> dict[str, Any]:
    """Median step time and added peak memory of ``arm``'s first stage, in this (fresh) process."""
    import torch
    from torch.utils.data import DataLoader

    from ltzoo.data import build_dataset
    from ltzoo.data.datasets import TransformedDataset
    from ltzoo.engine.objective import StageContext, get_method
    from ltzoo.models import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    recipe = _recipe(arm)
    stage = recipe.stages[0]
    data = build_dataset(recipe.dataset)
    ctx = StageContext(recipe=recipe, stage=stage, stage_index=0, data=data.info, steps_per_epoch=1)
    probe_model = build_model(recipe.arch, data.num_classes, in_chans=data.info.in_chans)
    transform = get_method(recipe.method)(probe_model, ctx).train_transform()
    loader = DataLoader(
        TransformedDataset(data.train, transform),
        batch_size=stage.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
    )
    batches, data_times = [], []
    iterator = iter(loader)
    for _ in range(warmup + steps):
        start = time.perf_counter()
        batches.append(next(iterator))
        data_times.append(time.perf_counter() - start)
    del probe_model

    baseline_kib = _status_kib("VmRSS")
    _reset_peak_rss()
    model = build_model(recipe.arch, data.num_classes, in_chans=data.info.in_chans).train()
    objective = get_method(recipe.method)(model, ctx).train()
    optimizer = torch.optim.SGD(
        objective.param_groups(), lr=stage.lr * 0.1, momentum=stage.momentum, weight_decay=stage.weight_decay
    )
    times = []
    for index, batch in enumerate(batches):
        start = time.perf_counter()
        out = objective.training_step(batch, 0)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        objective.after_optimizer_step()
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return {
        "arm": arm,
        "stage": stage.name,
        "batch_size": stage.batch_size,
        "steps_timed": len(times),
        "median_step_s": statistics.median(times),
        "median_data_s": statistics.median(data_times[warmup:]),
        "added_peak_rss_mb": (_status_kib("VmHWM") - baseline_kib) / 1024,
    }


# ----- accuracy ------------------------------------------------------------------------------------
def run_arm(arm: str, seed: int, args: BenchmarkArgs) -> dict[str, Any]:
    limits = {"epochs": 2, "steps_per_epoch": 2} if args.quick else {}
    metrics = train_seeded(f"{arm}.fmnist_lt", seed, args.work_dir, recipe=_recipe(arm), **limits)
    return run_record(metrics, arm=arm, seed=seed)


def _markdown(report: dict[str, Any]) -> str:
    arms = report["arms"]
    cost = report["cost"]
    # No "train time x CE" column: the runs' wall times depend on what else the 2 cores were running
    # (the CE seeds were trained next to other jobs); the step cost below is measured alone.
    header = [
        "arm",
        "test all",
        "test many",
        "test medium",
        "test few",
        "val all",
        "step time x CE",
        "added peak mem x CE",
    ]
    rows = []
    for arm, label in ARMS.items():
        runs = arms[arm]["runs"]
        rows.append(
            [
                label,
                *[fmt_mean_std(r["test"][g] for r in runs) for g in GROUPS],
                fmt_mean_std(r["val"]["all"] for r in runs),
                f"{cost[arm]['step_time_vs_ce']:.2f}",
                f"{cost[arm]['peak_mem_vs_ce']:.2f}",
            ]
        )
    means = {arm: arms[arm]["test"]["all"]["mean"] for arm in ORDER}
    order_text = ", ".join(f"{arm} {means[arm]:.2f}" for arm in ORDER)
    pair_rows = [
        [
            f"{ARMS[p['better']]} > {ARMS[p['worse']]}",
            fmt_mean_std(p["differences"]),
            f"{p['wins']}/{len(p['differences'])}",
        ]
        for p in report["paper_pairs"]
    ]
    cost_rows = [
        [
            ARMS[a],
            cost[a]["batch_size"],
            f"{cost[a]['median_step_s']:.3f}",
            f"{cost[a]['median_data_s']:.3f}",
            f"{cost[a]['added_peak_rss_mb']:.0f}",
        ]
        for a in ARMS
    ]
    return "\n".join(
        [
            "## DSCL ablation on fmnist_lt" + (" (quick plumbing run: not a result)" if report["quick"] else ""),
            "",
            f"{len(report['seeds'])} seed(s) {report['seeds']}, equal epoch budget ({report['epochs']} epochs per "
            "arm), model selection on val, test top-1 (%) as mean ± sample std. Costs are first-stage training steps "
            f"measured alone in a fresh process with {report['threads']} thread(s).",
            "",
            markdown_table(header, rows),
            "",
            f"Ordering of the paper (ImageNet-LT, SCL 51.2 < DSCL 52.6 < PBSD 56.3 < DSCL+PBSD 57.7): "
            f"**{'holds' if report['paper_order_holds'] else 'does not hold'}** here (test all: {order_text}).",
            "Each step of the paper's ordering, then what PBSD adds to each loss, seed by seed (same seed, test all, "
            "points):",
            "",
            markdown_table(["claim", "difference", "seeds where it holds"], pair_rows),
            "",
            markdown_table(
                ["arm", "batch", "median step (s)", "median data (s/batch)", "added peak RSS (MB)"], cost_rows
            ),
        ]
    )


def measure_costs(threads: int, quick: bool) -> dict[str, dict[str, Any]]:
    """Every arm's step cost, one arm at a time, each in a fresh process (after the training runs: alone)."""
    steps, warmup = (2, 1) if quick else (10, 2)
    spawn = multiprocessing.get_context("spawn")
    cost: dict[str, dict[str, Any]] = {}
    for arm in ARMS:
        with spawn.Pool(1) as pool:
            cost[arm] = pool.apply(measure_step, (arm, steps, warmup, threads))
        print(f"[dscl_ablation] cost {arm}: {cost[arm]}", flush=True)
    for arm in ARMS:
        cost[arm]["step_time_vs_ce"] = cost[arm]["median_step_s"] / cost["ce"]["median_step_s"]
        cost[arm]["peak_mem_vs_ce"] = cost[arm]["added_peak_rss_mb"] / cost["ce"]["added_peak_rss_mb"]
    return cost


def summarise(runs_by_arm: dict[str, list[dict[str, Any]]], args: BenchmarkArgs) -> tuple[dict[str, Any], str]:
    arms = {
        arm: {
            "label": ARMS[arm],
            "runs": runs,
            "test": summary_by_group(runs, "test"),
            "val": summary_by_group(runs, "val"),
        }
        for arm, runs in runs_by_arm.items()
    }
    means = [arms[arm]["test"]["all"]["mean"] for arm in ORDER]
    paper_pairs = []
    # The paper's ordering step by step, then what PBSD adds on top of each loss.
    for worse, better in [*zip(ORDER, ORDER[1:]), ("dscl", "dscl_pbsd"), ("scl", "pbsd")]:
        by_seed = {r["seed"]: r["test"]["all"] for r in arms[worse]["runs"]}
        differences = [r["test"]["all"] - by_seed[r["seed"]] for r in arms[better]["runs"] if r["seed"] in by_seed]
        paper_pairs.append(
            {"better": better, "worse": worse, "differences": differences, "wins": sum(d > 0 for d in differences)}
        )
    recipe = _recipe("dscl_pbsd")
    report = {
        "quick": args.quick,
        "seeds": args.seeds,
        "threads": args.threads,
        "epochs": _recipe("ce").total_epochs if not args.quick else "2 (quick)",
        "dataset": "fmnist_lt",
        "recipes": {arm: _recipe(arm).to_dict() for arm in ARMS},
        "paper_imagenet_lt_top1": PAPER_IMAGENET_LT,
        "paper_order_holds": all(a < b for a, b in zip(means, means[1:])),
        "paper_pairs": paper_pairs,
        "arms": arms,
        "cost": measure_costs(args.threads, args.quick),
        "dscl_stage_epochs": [s.epochs for s in recipe.stages],
    }
    return report, _markdown(report)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return ablation_main(
        "dscl_ablation",
        lambda args: list(ARMS),
        run_arm,
        summarise,
        argv,
        description=__doc__.splitlines()[0],
        quick_help="1 seed, 2 epochs of 2 steps, 2 timed steps",
    )


if __name__ == "__main__":
    main()
