"""How good is each method's representation, classifier aside? kNN and nearest-class-mean on frozen features.

For every fmnist_lt recipe at a budget (``--epochs``, default the recipes' own) and each seed whose run
exists under runs/ (found by recipe, data and precision, as every benchmark finds runs: nothing is
trained here), the pooled backbone features of the training set (evaluation transform, no augmentation)
are the memory, and val and test images are classified by

- **kNN**: the majority label of the k = 20 nearest training features by cosine similarity (ties go to
  the class with the larger summed similarity);
- **NCM**: the nearest class mean (the mean of each class's L2-normalised training features) by cosine.

Both ignore the trained classifier, so they compare representations: a method that beats CE with its
classifier but not with kNN/NCM re-balances its classifier rather than learning better features.

    .venv/bin/python -m benchmarks.feature_probes [--epochs 30] [--seeds 0 1 2]

Writes ``benchmarks/results/feature_probes.{json,md}``.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from benchmarks.common import (
    GROUPS,
    RESULTS_DIR,
    EarlierSeeds,
    earlier_report,
    find_finished_run,
    fmt_mean_std,
    markdown_table,
    recipe_sha256,
    write_results,
)

K = 20


def pooled_features(model: Any, dataset: Any, transform: Any, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    import torch
    from torch.utils.data import DataLoader

    from ltzoo.data.datasets import TransformedDataset

    features, labels = [], []
    with torch.inference_mode():
        for images, targets in DataLoader(TransformedDataset(dataset, transform), batch_size=batch_size):
            pooled = model.forward_head(model.forward_features(images), pre_logits=True)
            features.append(torch.nn.functional.normalize(pooled.float(), dim=1).numpy())
            labels.append(targets.numpy())
    return np.concatenate(features), np.concatenate(labels)


def knn_predict(
    memory: np.ndarray, memory_labels: np.ndarray, queries: np.ndarray, num_classes: int, k: int = K
) -> np.ndarray:
    """Majority vote of the k most cosine-similar memory rows (features are L2-normalised)."""
    similarity = queries @ memory.T
    nearest = np.argpartition(-similarity, kth=min(k, len(memory)) - 1, axis=1)[:, :k]
    votes = np.zeros((len(queries), num_classes))
    summed = np.zeros((len(queries), num_classes))
    rows = np.arange(len(queries))[:, None]
    np.add.at(votes, (rows, memory_labels[nearest]), 1.0)
    np.add.at(summed, (rows, memory_labels[nearest]), similarity[rows, nearest])
    return np.argmax(votes + 1e-6 * summed, axis=1)  # summed <= k: it only breaks ties between vote counts


def ncm_predict(memory: np.ndarray, memory_labels: np.ndarray, queries: np.ndarray, num_classes: int) -> np.ndarray:
    means = np.stack([memory[memory_labels == c].mean(axis=0) for c in range(num_classes)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    return np.argmax(queries @ means.T, axis=1)


def probe_run(run_dir: Any, data: Any) -> dict[str, Any]:
    from ltzoo.data.transforms import eval_transform
    from ltzoo.engine.evaluator import accuracy_report
    from ltzoo.runs import load_run

    model, _ = load_run(run_dir)
    transform = eval_transform(data.info)
    memory, memory_labels = pooled_features(model, data.train, transform)
    result: dict[str, Any] = {}
    for split in ("val", "test"):
        queries, labels = pooled_features(model, data.split(split), transform)
        for probe, predict in (("knn", knn_predict), ("ncm", ncm_predict)):
            report = accuracy_report(
                predict(memory, memory_labels, queries, data.num_classes), labels, data.num_classes, data.shots
            )
            result.setdefault(probe, {})[split] = {g: report[g] for g in GROUPS}
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="accepted for benchmarks.run; the probe is cheap")
    parser.add_argument(
        "--epochs", type=int, default=None, help="the budget whose runs are probed (default: the recipes')"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)

    import torch

    import ltzoo
    from ltzoo.data import build_dataset
    from ltzoo.precision import resolve_precision
    from ltzoo.recipe import scale_stages

    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = build_dataset("fmnist_lt")
    result_name = "feature_probes" if not args.epochs else f"feature_probes_{args.epochs}ep"

    def budget_recipe(name: str) -> Any:
        recipe = ltzoo.get_entry(name).recipe()
        return recipe.replace(stages=scale_stages(recipe.stages, args.epochs)) if args.epochs else recipe

    names = ltzoo.list_models("*.fmnist_lt")
    fingerprints = {name: recipe_sha256(budget_recipe(name), row=name) for name in names}
    earlier_seeds = EarlierSeeds.matching(
        earlier_report(result_name, args.quick, RESULTS_DIR).get("runs", {}), fingerprints
    )
    rows, report_rows = [], {}
    for name in names:
        probes = []
        for seed in args.seeds:
            recipe = budget_recipe(name).replace(seed=seed)
            run = find_finished_run(recipe.to_dict(), data.index_sha256, resolve_precision(recipe.precision, "cpu"))
            if run is None:
                if (record := earlier_seeds.instead_of_run(name, seed, name)) is not None:
                    probes.append(record)
                continue
            probes.append({"seed": seed, **probe_run(run, data), "recipe_sha256": fingerprints[name]})
        if not probes:
            continue
        report_rows[name] = probes
        for probe in ("knn", "ncm"):
            rows.append(
                [
                    name.split(".")[0],
                    f"{probe} ({len(probes)} seed{'s' if len(probes) > 1 else ''})",
                    *[fmt_mean_std(p[probe]["test"][g] for p in probes) for g in GROUPS],
                    fmt_mean_std(p[probe]["val"]["all"] for p in probes),
                ]
            )
    missing, carried = earlier_seeds.missing, earlier_seeds.carried
    budget = args.epochs or "the recipes' own"
    md = "\n".join(
        [
            f"## Frozen features: kNN (k = {K}, cosine) and nearest class mean, fmnist_lt ({budget} epochs)",
            "",
            "Training features without augmentation are the memory; the trained classifier plays no part. Test "
            "top-1 (%) as mean ± sample std over the seeds found.",
            "",
            markdown_table(["method", "probe", *[f"test {g}" for g in GROUPS], "val all"], rows),
            "",
            (f"Not found (not trained at this budget on this machine): {', '.join(missing)}." if missing else ""),
            (
                f"Kept from earlier results (same recipe fingerprint; their runs are not here): {len(carried)} of "
                f"{sum(len(probes) for probes in report_rows.values())} seeds."
                if carried
                else ""
            ),
        ]
    )
    report = {
        "quick": args.quick,
        "epochs": args.epochs,
        "k": K,
        "runs": report_rows,
        "missing": missing,
        "carried": carried,
    }
    write_results(result_name, report, md)
    print(md)
    return report


if __name__ == "__main__":
    main()
