"""SCL + RSG + LDAM ablation on fmnist_lt: CE, LDAM-DRW, SCL, RSG, the joint method and its variants.

Every arm trains with the real trainer at the CE recipe's fmnist_lt budget (``FMNIST_EPOCHS`` in total at
batch 64; two-view arms spend about twice the compute per epoch), for each seed (0 1 2 by default),
with model selection on val. Reported on the balanced test split, as mean ± sample std over seeds:

* top-1 accuracy for all / many / medium / few classes;
* feature compactness: the mean cosine similarity of each test image's pooled feature to its class's
  mean direction (higher = tighter clusters), overall and per shot group;
* a table of the synergy paper's claims (arXiv 2501.13756), each turned into a measurable comparison
  between two arms with the same seeds; a claim "held" when it held for every seed, "not held" when
  for none, "mixed" otherwise.

Arms: the five zoo recipes (``ce``, ``ldam_drw``, ``scl``, ``rsg``, ``scl_rsg_ldam``) and variants
of the joint recipe that remove or change one part: ``synergy_no_rsg`` and ``synergy_no_margin`` by
default, ``synergy_gen_supcon`` (generated features also in SupCon) on request. (The joint recipe
without SCL is the ``rsg`` arm.) Seed by seed, every arm of a seed before the next seed, so an interrupted
benchmark (rerun with fewer ``--seeds`` or ``--arms`` to report what finished) has every arm's first seeds.
Runs go under ``--work-dir`` (default ``runs/benchmarks``, shared with the other benchmarks' runs of the
same zoo entries); finished runs are reused, interrupted ones resumed.

    nice -n 10 .venv/bin/python -m benchmarks.synergy_ablation          # full: 7 arms x 3 seeds (hours)
    .venv/bin/python -m benchmarks.synergy_ablation --quick             # plumbing check on a small subset

Writes ``benchmarks/results/synergy_ablation.json`` and ``.md`` (``--quick``: ``synergy_ablation_quick.*``).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    GROUPS,
    WORK_DIR,
    BenchmarkArgs,
    fmt_mean_std,
    markdown_table,
    mean_std,
    parse_benchmark_args,
    quick_fmnist_lt,
    run_ablation,
    run_record,
    summary_by_group,
    train_seeded,
)
from ltzoo.fileio import atomic_write_json
from ltzoo.recipe import Recipe
from ltzoo.recipes.scl_rsg_ldam import synergy_variant
from ltzoo.registry import get_entry

SYNERGY = "scl_rsg_ldam_resnet32.fmnist_lt"


def _entry(name: str) -> Callable[[], Recipe]:
    return lambda: get_entry(name).recipe()


def _variant(**method_args: Any) -> Callable[[], Recipe]:
    return lambda: synergy_variant(get_entry(SYNERGY).recipe(), **method_args)


# arm -> (label, run name, recipe builder)
ARMS: dict[str, tuple[str, str, Callable[[], Recipe]]] = {
    "ce": ("CE", "ce_resnet32.fmnist_lt", _entry("ce_resnet32.fmnist_lt")),
    "ldam_drw": ("LDAM-DRW", "ldam_drw_resnet32.fmnist_lt", _entry("ldam_drw_resnet32.fmnist_lt")),
    "scl": ("SCL (SupCon + balanced classifier)", "scl_resnet32.fmnist_lt", _entry("scl_resnet32.fmnist_lt")),
    "rsg": ("RSG (LDAM-DRW-RSG)", "rsg_resnet32.fmnist_lt", _entry("rsg_resnet32.fmnist_lt")),
    "scl_rsg_ldam": ("SCL+RSG+LDAM (joint)", SYNERGY, _entry(SYNERGY)),
    "synergy_no_rsg": ("joint without RSG", f"{SYNERGY}+no_rsg", _variant(use_rsg=False)),
    "synergy_no_margin": ("joint without LDAM margins (max_m 0)", f"{SYNERGY}+no_margin", _variant(max_m=0.0)),
    "synergy_gen_supcon": (
        "joint, generated features also in SupCon",
        f"{SYNERGY}+gen_supcon",
        _variant(generated_in_supcon=True),
    ),
}

# synergy_gen_supcon costs another three two-view runs; it is run on request (--arms ...).
DEFAULT_ARMS = [arm for arm in ARMS if arm != "synergy_gen_supcon"]

# (claim of the paper, how it is measured here, arm a, arm b, metric); held when a > b.
CLAIMS: list[tuple[str, str, str, str, str]] = [
    ("SCL tightens intra-class clusters", "compactness (all): SCL > CE", "scl", "ce", "compact_all"),
    ("... but favours head classes", "compactness gap many - few: SCL > CE", "scl", "ce", "compact_gap"),
    ("RSG pulls features towards class centres", "compactness (all): RSG > LDAM-DRW", "rsg", "ldam_drw", "compact_all"),
    (
        "RSG's generated tail features compensate the tail space SCL squeezes",
        "few-shot acc: joint > joint without RSG",
        "scl_rsg_ldam",
        "synergy_no_rsg",
        "acc_few",
    ),
    (
        "LDAM adds larger margins for tail classes (helping them)",
        "few-shot acc: LDAM-DRW > CE",
        "ldam_drw",
        "ce",
        "acc_few",
    ),
    (
        "... also inside the combination",
        "few-shot acc: joint > joint without margins",
        "scl_rsg_ldam",
        "synergy_no_margin",
        "acc_few",
    ),
    ("RSG and LDAM give up head accuracy", "many-shot acc: CE > RSG", "ce", "rsg", "acc_many"),
    ("... (LDAM alone)", "many-shot acc: CE > LDAM-DRW", "ce", "ldam_drw", "acc_many"),
    (
        "SCL recovers the head accuracy that RSG and LDAM give up",
        "many-shot acc: joint > RSG",
        "scl_rsg_ldam",
        "rsg",
        "acc_many",
    ),
    (
        "The end-to-end combination beats its parts",
        "all acc: joint > best single method (per seed)",
        "scl_rsg_ldam",
        "best_single",
        "acc_all",
    ),
]
SINGLE_METHODS = ("ce", "ldam_drw", "scl", "rsg")


# ----- measurements --------------------------------------------------------------------------------
@torch.no_grad()
def feature_compactness(run_dir: Path, data: Any, batch_size: int = 500) -> dict[str, float]:
    """Mean cosine similarity of test features to their class mean direction, overall and per shot group."""
    import ltzoo
    from ltzoo.data.transforms import eval_transform

    model = ltzoo.load(f"local-dir:{run_dir}")
    transform = eval_transform(data.info)
    features, labels = [], []
    for start in range(0, len(data.test), batch_size):
        items = [data.test[i] for i in range(start, min(start + batch_size, len(data.test)))]
        images = torch.stack([transform(image) for image, _ in items])
        pooled = model.forward_head(model.forward_features(images), pre_logits=True)
        features.append(torch.nn.functional.normalize(pooled, dim=1))
        labels += [label for _, label in items]
    feats, targets = torch.cat(features), torch.tensor(labels)
    per_class = []
    for c in range(data.num_classes):
        members = feats[targets == c]
        centre = torch.nn.functional.normalize(members.mean(0), dim=0)
        per_class.append((members @ centre).mean().item())
    shots = data.shots.to_dict()
    result = {"all": statistics.fmean(per_class)}
    for group in ("many", "medium", "few"):
        classes = shots[group]
        result[group] = statistics.fmean(per_class[c] for c in classes) if classes else None
    return result


def trainer_options(quick: bool) -> dict[str, Any]:
    """What every run gets besides its recipe (the data aside): --quick's tiny budget."""
    return {"epochs": 2, "steps_per_epoch": 2} if quick else {}


def run_arm(arm: str, seed: int, args: BenchmarkArgs) -> dict[str, Any]:
    label, name, build = ARMS[arm]
    print(f"[synergy_ablation] {arm} seed {seed}", flush=True)
    data = benchmark_data(args.quick)
    # --quick trains on the small subset; a full run builds fmnist_lt itself, as every benchmark's runs do.
    options = {**trainer_options(args.quick), "data": data} if args.quick else {}
    metrics = train_seeded(name, seed, args.work_dir, recipe=build(), **options)
    # The run may be one another benchmark trained (train_seeded reuses it): read it where it is.
    out = Path(metrics["run_dir"])
    cache = out / "compactness.json"
    if cache.is_file():
        compact = json.loads(cache.read_text())
    else:
        compact = feature_compactness(out, data)
        atomic_write_json(cache, compact)
    return run_record(metrics, seed=seed, compactness=compact)


def _metric(run: dict[str, Any], metric: str) -> float | None:
    if metric.startswith("acc_"):
        return run["test"][metric[4:]]
    compact = run["compactness"]
    if metric == "compact_gap":
        return None if compact["many"] is None or compact["few"] is None else compact["many"] - compact["few"]
    return compact[metric[len("compact_") :]]


def judge_claims(arms: dict[str, Any]) -> list[dict[str, Any]]:
    """Each claim as paired per-seed differences a - b; 'held' when positive for every seed."""
    by_seed = {arm: {r["seed"]: r for r in result["runs"]} for arm, result in arms.items()}
    rows = []
    for claim, proxy, a, b, metric in CLAIMS:
        needed = [a] + (list(SINGLE_METHODS) if b == "best_single" else [b])
        if any(arm not in by_seed for arm in needed):
            rows.append({"claim": claim, "proxy": proxy, "verdict": "not measured (arm not run)"})
            continue
        seeds = sorted(set.intersection(*(set(by_seed[arm]) for arm in needed)))
        values_a = [_metric(by_seed[a][s], metric) for s in seeds]
        if b == "best_single":
            values_b = [max(_metric(by_seed[m][s], metric) for m in SINGLE_METHODS) for s in seeds]
        else:
            values_b = [_metric(by_seed[b][s], metric) for s in seeds]
        diffs = [x - y for x, y in zip(values_a, values_b) if x is not None and y is not None]
        if not diffs:
            rows.append({"claim": claim, "proxy": proxy, "verdict": "not measured (empty shot group)"})
            continue
        wins = sum(d > 0 for d in diffs)
        verdict = "held" if wins == len(diffs) else "not held" if wins == 0 else "mixed"
        rows.append(
            {
                "claim": claim,
                "proxy": proxy,
                "a": values_a,
                "b": values_b,
                "diff": mean_std(diffs),
                "seeds_held": f"{wins}/{len(diffs)}",
                "verdict": verdict,
                "metric": metric,
            }
        )
    return rows


def summarise_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {split: summary_by_group(runs, split) for split in ("test", "val", "compactness")}


def markdown(report: dict[str, Any]) -> str:
    config = report["config"]
    lines = [
        "# SCL + RSG + LDAM ablation on fmnist_lt" + (" (quick: plumbing check only)" if config["quick"] else ""),
        "",
        f"Top-1 (%) on the balanced test split, mean ± sample std over seeds {config['seeds']}; model selection on "
        f"val; same epoch budget for every arm. Command: `{config['command']}`.",
        "",
    ]
    rows = []
    for result in report["arms"].values():
        runs = result["runs"]
        rows.append(
            [
                result["label"],
                *(fmt_mean_std(r["test"][g] for r in runs) for g in GROUPS),
                fmt_mean_std(r["val"]["all"] for r in runs),
                f"{statistics.fmean(r['train_time_s'] for r in runs):.0f}",
            ]
        )
    lines += [markdown_table(["arm", "all", "many", "medium", "few", "val all", "train s/run"], rows), ""]
    lines += ["Feature compactness (mean cosine of test features to their class mean direction; higher = tighter):", ""]
    rows = [
        [result["label"], *(fmt_mean_std((r["compactness"][g] for r in result["runs"]), 3) for g in GROUPS)]
        for result in report["arms"].values()
    ]
    lines += [markdown_table(["arm", "all", "many", "medium", "few"], rows), ""]
    lines += ["Claims of the synergy paper on this data (paired over seeds; held = a > b for every seed):", ""]
    rows = []
    for row in report["claims"]:
        if "diff" not in row:
            rows.append([row["claim"], row["proxy"], "-", "-", row["verdict"]])
            continue
        digits = 3 if row["metric"].startswith("compact") else 2
        mean, std = row["diff"]
        rows.append(
            [row["claim"], row["proxy"], f"{mean:+.{digits}f} ± {std:.{digits}f}", row["seeds_held"], row["verdict"]]
        )
    lines += [markdown_table(["claim", "measured as", "a - b", "seeds", "verdict"], rows), ""]
    lines += [
        f"Shot groups (train counts >100 / 20-100 / <20): {config['shots']}. The joint method's choices "
        "(loss weights, views, where generated features go) are ltzoo's, see `ltzoo/recipes/scl_rsg_ldam.py`.",
        "",
    ]
    return "\n".join(lines)


@functools.cache
def benchmark_data(quick: bool) -> Any:
    """fmnist_lt, or its small subset for --quick (built once per process)."""
    from ltzoo.data import build_dataset

    return quick_fmnist_lt() if quick else build_dataset("fmnist_lt")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_benchmark_args(
        "synergy_ablation",
        argv,
        description=__doc__.splitlines()[0],
        add_flags=_flags,
        quick_help="1 seed, 2 epochs of 2 steps on a small subset",
        work_dirs=(WORK_DIR, WORK_DIR / "synergy_quick"),
    )
    started = time.time()

    def summarise(runs_by_arm: dict[str, list[dict[str, Any]]], args: BenchmarkArgs) -> tuple[dict[str, Any], str]:
        arms = {
            arm: {
                "label": ARMS[arm][0],
                "name": ARMS[arm][1],
                "recipe": ARMS[arm][2]().to_dict(),
                "runs": runs,
                **summarise_runs(runs),
            }
            for arm, runs in runs_by_arm.items()
        }
        report = {
            "quick": args.quick,
            "dataset": "fmnist_lt" + (" (quick subset)" if args.quick else ""),
            "config": {
                "seeds": args.seeds,
                "quick": args.quick,
                "arms": args.options.arms,
                "work_dir": str(args.work_dir),
                "trainer_options": trainer_options(args.quick),
                "command": " ".join(
                    ["python", "-m", "benchmarks.synergy_ablation", *(argv if argv is not None else sys.argv[1:])]
                ),
                "shots": benchmark_data(args.quick).shots.to_dict(),
                "wall_time_s": time.time() - started,
            },
            "arms": arms,
            "claims": judge_claims(arms),
        }
        return report, markdown(report)

    return run_ablation("synergy_ablation", args, args.options.arms, run_arm, summarise)


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--arms", nargs="+", choices=list(ARMS), default=DEFAULT_ARMS, help=f"default: {' '.join(DEFAULT_ARMS)}"
    )


if __name__ == "__main__":
    main()
