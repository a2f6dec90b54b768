"""Shared benchmark plumbing: machine facts, mean ± std, seeded training runs, JSON + markdown output, and
the command line and main loop of the training benchmarks (:func:`ablation_main`).

Every benchmark is a module run from the repository root, ``python -m benchmarks.<name>``; it writes
``benchmarks/results/<name>.json`` (numbers + machine + versions) and ``benchmarks/results/<name>.md`` (a
table); ``python -m benchmarks.run`` runs them all and renders REPORT.md. Absolute times drift on shared
machines, so benchmarks report ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Overridable so that the benchmarks' own smoke test writes into a temporary directory.
RESULTS_DIR = Path(os.environ.get("LTZOO_BENCH_RESULTS", ROOT / "benchmarks" / "results"))
WORK_DIR = Path(os.environ.get("LTZOO_BENCH_WORK", ROOT / "runs" / "benchmarks"))
GROUPS = ("all", "many", "medium", "few")  # the accuracy columns of every benchmark


def machine_info() -> dict[str, Any]:
    import torch

    import ltzoo

    cpu_model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ltzoo": ltzoo.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for a single value); None values are ignored."""
    clean = [float(v) for v in values if v is not None]
    if not clean:
        return None, None
    return statistics.fmean(clean), (statistics.stdev(clean) if len(clean) > 1 else 0.0)


def fmt_mean_std(values: Iterable[float | None], digits: int = 2) -> str:
    """``mean ± std``; a single value is printed alone (a spread of one seed is not 0, it is unknown)."""
    clean = [v for v in values if v is not None]
    mean, std = mean_std(clean)
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" if len(clean) == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def write_results(name: str, report: dict[str, Any], markdown: str, results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``<name>.json`` (with machine facts) and ``<name>.md`` atomically; returns the JSON path.

    A ``--quick`` report (``report["quick"]``) goes to ``<name>_quick.*``: smoke numbers never overwrite
    the full-mode results that REPORT.md and the README are rendered from (git ignores the quick files)."""
    from ltzoo.fileio import atomic_write_bytes, atomic_write_json

    if report.get("quick") and not name.endswith("_quick"):
        name += "_quick"
    results_dir.mkdir(parents=True, exist_ok=True)
    report = repo_relative_paths({"benchmark": name, "machine": machine_info(), **report})
    atomic_write_json(results_dir / f"{name}.json", report)
    atomic_write_bytes(results_dir / f"{name}.md", (markdown.rstrip() + "\n").encode())
    return results_dir / f"{name}.json"


WORK_VAR = "$LTZOO_BENCH_WORK"


def repo_relative_paths(obj: Any, root: Path = ROOT, work_dir: Path = WORK_DIR) -> Any:
    """``obj`` with every absolute path rewritten so results name no folder of the machine that made them:
    relative to the repo (``runs/benchmarks/...``); under a work folder outside the repo (``$LTZOO_BENCH_WORK``)
    as ``$LTZOO_BENCH_WORK/...``; anything else by its folder's name. Benchmarks keep absolute paths in
    memory (they load the runs); only what is written is rewritten."""
    if isinstance(obj, dict):
        return {key: repo_relative_paths(value, root, work_dir) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [repo_relative_paths(value, root, work_dir) for value in obj]
    if isinstance(obj, str) and os.path.isabs(obj) and "\n" not in obj:
        path = Path(obj)
        for base, prefix in ((root, ""), (root.resolve(), ""), (work_dir, WORK_VAR), (work_dir.resolve(), WORK_VAR)):
            if path.is_relative_to(base):
                relative = path.relative_to(base).as_posix()
                return f"{prefix}/{relative}" if prefix else (relative or ".")
        return path.name
    return obj


def recipe_sha256(recipe: Any, **extra: Any) -> str:
    """A fingerprint of ``recipe`` (its seed aside) plus ``extra``: results kept from an earlier invocation are
    reported only while the registry's recipe still has it, so an edited recipe (a budget, a view, a learning
    rate) is never reported from runs of the old one."""
    import hashlib

    fields = {**recipe.replace(seed=0).to_dict(), **extra}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class EarlierSeeds:
    """The per-seed records of results written earlier that a benchmark may report for seeds whose runs are not
    here (runs/ is git-ignored, so a fresh clone finds no run), and which seeds it took from them or found missing.

    ``records`` holds, by (row key, seed), only records whose ``recipe_sha256`` is still the row's fingerprint:
    records of an edited recipe, of a row not asked for, or with no fingerprint are never reported."""

    records: dict[tuple[str, int], dict[str, Any]]
    carried: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @classmethod
    def matching(cls, earlier_rows: dict[str, list[dict[str, Any]]], fingerprints: dict[str, str]) -> EarlierSeeds:
        """From ``earlier_rows`` (row key -> per-seed records), those of ``fingerprints`` (row key -> fingerprint)."""
        records = {}
        for key, fingerprint in fingerprints.items():
            for record in earlier_rows.get(key, []):
                if record.get("recipe_sha256") == fingerprint:
                    records[(key, record["seed"])] = record
        return cls(records)

    def instead_of_run(self, key: str, seed: int, label: str) -> dict[str, Any] | None:
        """The earlier record of ``seed`` of row ``key`` (noted as carried), or None (noted as missing)."""
        record = self.records.get((key, seed))
        (self.missing if record is None else self.carried).append(f"{label} seed {seed}")
        return record


def earlier_report(name: str, quick: bool, results_dir: Path | None = None) -> dict[str, Any]:
    """The results written earlier under ``name`` (``{}`` if none); a quick run reads only quick results."""
    path = (results_dir or RESULTS_DIR) / (f"{name}_quick.json" if quick else f"{name}.json")
    return json.loads(path.read_text()) if path.is_file() else {}


def find_finished_run(
    recipe_dict: dict[str, Any], index_sha256: str, precision: str = "fp32", search_root: Path = ROOT / "runs"
) -> Path | None:
    """A finished run anywhere under ``search_root`` of exactly this recipe (seed and epochs included; the
    notes aside), on exactly this data (the split index hash: the balanced upper bound shares CE's recipe),
    trained in ``precision`` (runs from before mixed precision trained in fp32) and with no step caps:
    benchmarks that share an arm (CE is in every ablation) train it once, whatever each calls it."""
    from ltzoo.recipe import same_recipe

    for config_path in sorted(search_root.glob("**/config.json")):
        run = config_path.parent
        if not (run / "metrics.json").is_file() or not (run / "model.safetensors").is_file():
            continue
        try:
            lt = json.loads(config_path.read_text()).get("ltzoo", {})
        except (OSError, json.JSONDecodeError):
            continue
        limits = lt.get("training_limits") or {}
        if (
            same_recipe(lt.get("recipe") or {}, recipe_dict)
            and lt.get("index_sha256") == index_sha256
            and lt.get("precision", "fp32") == precision
            and not any(limits.values())
        ):
            return run
    return None


def train_seeded(
    name: str,
    seed: int,
    work_dir: Path,
    *,
    recipe: Any = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    branch_from: tuple[Path, str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train zoo entry ``name`` (or ``recipe``) at ``seed`` under ``work_dir``. A finished run of the same
    recipe anywhere under runs/ is reused and an interrupted one resumed; returns its metrics, with the
    run directory under ``"run_dir"``. ``branch_from=(run_dir, stage)`` trains only the stages after
    ``stage``, from that run's checkpoint between them (``ltzoo.engine.branch``: the result is the full
    run's, checked), for recipes that differ from that run's in later-stage settings only."""
    from ltzoo.engine.branch import branch_from_stage
    from ltzoo.engine.trainer import CHECKPOINT_DIR, train
    from ltzoo.precision import resolve_precision
    from ltzoo.recipe import scale_stages
    from ltzoo.registry import get_entry

    recipe = (recipe if recipe is not None else get_entry(name).recipe()).replace(seed=seed)
    if epochs is not None:
        recipe = recipe.replace(stages=scale_stages(recipe.stages, epochs))
    if steps_per_epoch is None:
        from ltzoo.data import build_dataset

        data = options.get("data") or build_dataset(recipe.dataset)
        precision = resolve_precision(options.get("precision") or recipe.precision, options.get("device", "cpu"))
        found = find_finished_run(recipe.to_dict(), data.index_sha256, precision)
        if found is not None:
            return {**json.loads((found / "metrics.json").read_text()), "run_dir": str(found)}
    out = work_dir / f"{name.replace('.', '_')}_seed{seed}"
    set_aside_if_other_recipe(out, recipe.to_dict())
    if (out / "metrics.json").is_file():
        return {**json.loads((out / "metrics.json").read_text()), "run_dir": str(out)}
    resume = (out / CHECKPOINT_DIR / "last.pt").is_file()
    if branch_from is not None and not resume:
        record = branch_from_stage(branch_from[0], recipe, out, branch_from[1])
        options = {**options, "extra_config": {**options.get("extra_config", {}), "branched_from": record}}
        resume = True
    metrics = train(recipe, out, name=name, steps_per_epoch=steps_per_epoch, resume=resume, **options)
    return {**metrics, "run_dir": str(out)}


def _recorded_recipe(run: Path) -> dict[str, Any] | None:
    """The recipe a run directory was trained with: its config.json, or its checkpoint if unfinished."""
    config = run / "config.json"
    if config.is_file():
        return json.loads(config.read_text()).get("ltzoo", {}).get("recipe")
    checkpoint = run / "checkpoints" / "last.pt"
    if checkpoint.is_file():
        import torch

        return torch.load(checkpoint, map_location="cpu", weights_only=True).get("recipe")
    return None


def set_aside_if_other_recipe(run: Path, recipe_dict: dict[str, Any]) -> Path | None:
    """Rename ``run`` to ``<run>.superseded-N`` when it holds another recipe's run (the recipe changed
    since it was trained), so that it is neither reported as this recipe nor resumed; nothing is
    deleted. Returns the new location, or None when there was nothing to set aside."""
    from ltzoo.recipe import same_recipe

    recorded = _recorded_recipe(run) if run.is_dir() else None
    if recorded is None or same_recipe(recorded, recipe_dict):
        return None
    number = 1
    while (target := run.with_name(f"{run.name}.superseded-{number}")).exists():
        number += 1
    run.rename(target)
    print(f"[benchmarks] {run} was trained with another recipe; moved to {target}", flush=True)
    return target


def quick_fmnist_lt() -> Any:
    """--quick's data for the benchmarks that score their own runs: fmnist_lt with each split capped per class
    (train 150, val and test 20): the real images, still long-tailed, far fewer of them."""
    import torch

    from ltzoo.data import LTDataset, TensorImageDataset, build_dataset

    full = build_dataset("fmnist_lt")

    def cap(dataset: Any, per_class: int) -> TensorImageDataset:
        targets = torch.tensor(dataset.targets)
        keep = torch.cat([torch.nonzero(targets == c).flatten()[:per_class] for c in range(full.num_classes)])
        keep = keep.sort().values
        return TensorImageDataset(dataset.images[keep], targets[keep].tolist())

    return LTDataset(
        name=full.name,
        train=cap(full.train, 150),
        val=cap(full.val, 20),
        test=cap(full.test, 20),
        label_names=full.label_names,
        info=full.info,
        index_sha256="quick-subset-of-" + full.index_sha256,
    )


def run_jobs(function: Callable[..., Any], jobs: list[tuple[Any, ...]], workers: int = 1) -> list[Any]:
    """``function(*job)`` for every job, results in order; ``workers`` > 1 runs them in that many fresh processes.
    The engine is ``ltzoo select``'s (:func:`ltzoo.selection.jobs.run_jobs`: an Optuna study whose queued trials
    the workers take one at a time), so results must be JSON.

    Training runs on 2 cores go faster as two 1-thread processes than as one 2-thread process (the small
    convolutions do not split well over threads)."""
    from ltzoo.selection.jobs import run_jobs as run_queued_jobs

    return run_queued_jobs(function, jobs, workers)


def run_record(metrics: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """What a benchmark keeps of one training run: ``fields`` (arm, seed ...), where it is, what was
    selected on val, its training time and the val/test accuracy per group."""
    return {
        **fields,
        "run_dir": metrics.get("run_dir"),
        "selected": metrics["selected"],
        "train_time_s": metrics["train_time_s"],
        "val": {g: metrics["val"][g] for g in GROUPS},
        "test": {g: metrics["test"][g] for g in GROUPS},
    }


def summary_by_group(
    runs: list[dict[str, Any]], split: str, keys: Iterable[str] = GROUPS
) -> dict[str, dict[str, float | None]]:
    """``{group: {"mean": ..., "std": ...}}`` of ``run[split][group]`` over runs (seeds)."""
    return {key: dict(zip(("mean", "std"), mean_std(run[split][key] for run in runs), strict=True)) for key in keys}


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    # A "|" inside a cell (e.g. "1/(|P|+1)") would split it: escape it.
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ----- the training benchmarks: one command line, one main loop --------------------------------------
# An arm is whatever a benchmark trains once per seed: a zoo name, ("dscl_pbsd", 90) for a budget, ...
Arm = Hashable


@dataclass(frozen=True)
class BenchmarkArgs:
    """The flags every training benchmark takes, parsed; the benchmark's own flags are in ``options``."""

    quick: bool  # smoke mode: tiny budgets, the first seed only; results go to <name>_quick.*
    seeds: list[int]
    threads: int  # torch intra-op threads of each training process
    jobs: int  # training runs in parallel, one process each
    work_dir: Path  # where run directories go (finished runs anywhere under runs/ are reused)
    options: argparse.Namespace


def parse_benchmark_args(
    name: str,
    argv: list[str] | None,
    *,
    description: str,
    add_flags: Callable[[argparse.ArgumentParser], None] | None = None,
    default_seeds: Sequence[int] = (0, 1, 2),
    quick_help: str = "a plumbing check: tiny budgets, the first seed only",
    work_dirs: tuple[Path, Path] | None = None,
) -> BenchmarkArgs:
    """``--quick --seeds --threads --jobs --work-dir`` (and the flags ``add_flags`` adds) for benchmark ``name``.
    ``work_dirs`` is the default (full, quick) run folder; by default ``$LTZOO_BENCH_WORK/<name>[_quick]``."""
    full_dir, quick_dir = work_dirs or (WORK_DIR / name, WORK_DIR / f"{name}_quick")
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(default_seeds),
        help=f"seeds to train (default {' '.join(map(str, default_seeds))}; --quick: the first only)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads per training process (default 1)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="training runs in parallel, each in its own process (default 2: one per core)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help=f"run directories (default {repo_relative_paths(str(full_dir))}, "
        f"--quick: {repo_relative_paths(str(quick_dir))})",
    )
    if add_flags is not None:
        add_flags(parser)
    namespace = parser.parse_args(argv)
    common = {key: vars(namespace).pop(key) for key in ("quick", "seeds", "threads", "jobs", "work_dir")}
    if common["threads"] < 1 or common["jobs"] < 1:
        parser.error("--threads and --jobs must be >= 1")
    return BenchmarkArgs(
        quick=common["quick"],
        seeds=common["seeds"][:1] if common["quick"] else common["seeds"],
        threads=common["threads"],
        jobs=common["jobs"],
        work_dir=common["work_dir"] or (quick_dir if common["quick"] else full_dir),
        options=namespace,
    )


def _run_arm_in_job(run_arm: Callable[[Arm, int, BenchmarkArgs], Any], arm: Arm, seed: int, args: BenchmarkArgs) -> Any:
    import torch

    # Two 1-thread processes beat one 2-thread process on 2 cores: small convolutions do not split well.
    torch.set_num_threads(args.threads)
    return run_arm(arm, seed, args)


def run_arms(
    run_arm: Callable[[Arm, int, BenchmarkArgs], Any], jobs: Sequence[tuple[Arm, int]], args: BenchmarkArgs
) -> list[Any]:
    """``run_arm(arm, seed, args)`` for every (arm, seed) of ``jobs``, in order, ``args.jobs`` at a time (each in
    a fresh process with ``args.threads`` torch threads when more than one). ``run_arm`` must be a module-level
    function, so that the job processes can import it."""
    return run_jobs(_run_arm_in_job, [(run_arm, arm, seed, args) for arm, seed in jobs], args.jobs)


Summarise = Callable[[dict[Any, list[Any]], BenchmarkArgs], tuple[dict[str, Any], str]]


def run_ablation(
    name: str,
    args: BenchmarkArgs,
    arms: Sequence[Arm],
    run_arm: Callable[[Arm, int, BenchmarkArgs], Any],
    summarise: Summarise,
) -> dict[str, Any]:
    """Every arm for every seed, seed-major (every arm has its first seed early, so an interrupted benchmark
    rerun with fewer seeds already reports them); then ``summarise({arm: [one result per seed]}, args)`` gives
    the report and its markdown, written as ``results/<name>.*`` and printed. Returns the report."""
    jobs = [(arm, seed) for seed in args.seeds for arm in arms]
    results = run_arms(run_arm, jobs, args)
    by_arm: dict[Any, list[Any]] = {arm: [] for arm in arms}
    for (arm, _), result in zip(jobs, results, strict=True):
        by_arm[arm].append(result)
    report, markdown = summarise(by_arm, args)
    write_results(name, report, markdown)
    print(markdown)
    return report


def ablation_main(
    name: str,
    arms: Callable[[BenchmarkArgs], Sequence[Arm]],
    run_arm: Callable[[Arm, int, BenchmarkArgs], Any],
    summarise: Summarise,
    argv: list[str] | None = None,
    **flags: Any,
) -> dict[str, Any]:
    """The ``main()`` of a benchmark that trains arms x seeds: parse the common flags (``flags`` go to
    :func:`parse_benchmark_args`: description, add_flags, default_seeds, quick_help, work_dirs), then
    :func:`run_ablation` with the arms that ``arms(args)`` picks."""
    args = parse_benchmark_args(name, argv, **flags)
    return run_ablation(name, args, arms(args), run_arm, summarise)
