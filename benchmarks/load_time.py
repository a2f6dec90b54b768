"""Load time: ``ltzoo.load("hf-hub:...")`` from a warm cache vs timm + a local safetensors file.

The Hub is the local stand-in (ltzoo.testing.hub_server) on 127.0.0.1; the repo is pushed once, loaded
once to warm the cache, then timed. The baseline builds the same timm model and loads the same
weights file with safetensors. ResNet-50 (ImageNet-LT head) and ResNet-32 (fmnist_lt).

    .venv/bin/python -m benchmarks.load_time [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import markdown_table, write_results

CASES = [("ce_resnet50.imagenet_lt", "resnet50"), ("ce_resnet32.fmnist_lt", "resnet32")]


def make_run(name: str, out: Path) -> None:
    """A run directory with random weights and a complete config (no training needed to time loading)."""
    import ltzoo
    from ltzoo.data.spec import dataset_spec
    from ltzoo.runs import build_config, save_run

    entry = ltzoo.get_entry(name)
    model = ltzoo.create_model(name)
    spec = dataset_spec(entry.tag)
    recipe = entry.recipe()
    longtail = {"dataset": entry.tag, "class_counts": [1] * spec.num_classes}
    config = build_config(
        model,
        arch=entry.arch,
        in_chans=spec.in_chans,
        head=recipe.head,
        label_names=[str(i) for i in range(spec.num_classes)],
        data_info={**spec.to_dict(), "input_size": list(spec.input_size)},
        longtail=longtail,
        ltzoo_fields={"name": name, "method": entry.method, "recipe": recipe.to_dict()},
    )
    save_run(out, model, config, {"name": name})


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats instead of 7")
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else 7

    import timm
    from huggingface_hub import HfApi
    from safetensors.torch import load_file

    import ltzoo
    from ltzoo.cli.demo import local_hub
    from ltzoo.models import build_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp, local_hub():
        for name, arch in CASES:
            run = Path(tmp) / name
            make_run(name, run)
            repo = f"ltzoo-org/{name}"
            # Untrained weights have no accuracy for a model card, so upload the run folder as it is:
            # loading needs only config.json and model.safetensors.
            api = HfApi(endpoint=os.environ["HF_ENDPOINT"], token=os.environ["HF_TOKEN"])
            api.create_repo(repo, exist_ok=True)
            api.upload_folder(repo_id=repo, folder_path=str(run))
            ltzoo.load(f"hf-hub:{repo}")  # warm the cache
            config = ltzoo.get_entry(name)
            num_classes = ltzoo.create_model(name).num_classes
            in_chans = 1 if arch == "resnet32" else 3

            # This case's values are bound as defaults so that the closure cannot see a later iteration's.
            def baseline(
                arch: str = arch, num_classes: int = num_classes, in_chans: int = in_chans, run: Path = run
            ) -> None:
                if arch == "resnet32":  # not a timm architecture: ltzoo's own builder is the baseline
                    model = build_model(arch, num_classes, in_chans=in_chans)
                    model.load_state_dict(load_file(str(run / "model.safetensors")))
                else:
                    model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
                    state = {
                        k.replace("backbone.", "").replace("head.", "fc."): v
                        for k, v in load_file(str(run / "model.safetensors")).items()
                    }
                    model.load_state_dict(state)
                model.eval()

            commit = api.repo_info(repo).sha
            ltzoo.load(f"hf-hub:{repo}@{commit}")  # the pinned revision's cache entry
            t_ltzoo = timed(lambda repo=repo: ltzoo.load(f"hf-hub:{repo}"), repeats)
            t_pinned = timed(lambda repo=repo, commit=commit: ltzoo.load(f"hf-hub:{repo}@{commit}"), repeats)
            t_base = timed(baseline, repeats)
            rows.append(
                {
                    "name": config.name,
                    "ltzoo_load_s": t_ltzoo,
                    "ltzoo_pinned_load_s": t_pinned,
                    "baseline_s": t_base,
                    "ratio": t_ltzoo / t_base,
                    "pinned_ratio": t_pinned / t_base,
                }
            )
    table = markdown_table(
        [
            "model",
            "ltzoo.load warm cache (s)",
            "pinned to a commit (s)",
            "build + safetensors (s)",
            "ratio",
            "pinned ratio",
            "target (ratio ≤ 1.5x)",
        ],
        [
            [
                r["name"],
                f"{r['ltzoo_load_s']:.3f}",
                f"{r['ltzoo_pinned_load_s']:.3f}",
                f"{r['baseline_s']:.3f}",
                f"{r['ratio']:.2f}x",
                f"{r['pinned_ratio']:.2f}x",
                ("met" if r["ratio"] <= 1.5 else "NOT met")
                + ", pinned: "
                + ("met" if r["pinned_ratio"] <= 1.5 else "NOT met"),
            ]
            for r in rows
        ],
    )
    md = (
        "## Load time: `ltzoo.load` from a warm Hub cache vs building the model and loading safetensors\n\n"
        f"{table}\n\nMedian of {repeats}. ltzoo's time includes the Hub revision check against the local stand-in "
        "server, config parsing, the sha256 check of the weights and strict loading. Pinned "
        "(`hf-hub:ORG/REPO@COMMIT`): a commit hash whose files are cached needs no request to the Hub, which is "
        "what a deployment that pins its model should do."
    )
    report = {"quick": args.quick, "repeats": repeats, "results": rows}
    write_results("load_time", report, md)
    print(md)
    return report


if __name__ == "__main__":
    main()
