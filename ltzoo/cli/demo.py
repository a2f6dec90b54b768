"""``ltzoo demo``: the main job on the built-in default, end to end.

Train ``ce_resnet32.fmnist_lt`` on the real long-tailed Fashion-MNIST, print all/many/medium/few,
load the run back through ``ltzoo.load``, export fp32 + int8 ONNX with the per-split tail gate, push
everything to a (local) Hub and load it back from there.

A newcomer's first command should show the whole chain in minutes, so the demo trains a short budget
(:data:`DEMO_EPOCHS` of the recipe's epochs, spread over its schedule in proportion) and says what the full
recipe reaches; ``--full`` trains the full recipe.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "ce_resnet32.fmnist_lt"
# The short budget: about 5 minutes for the whole demo on 2 cores (training is most of it).
DEMO_EPOCHS = 12
# What the full recipe measured, when this is a checkout (the benchmark's table, 3 seeds).
ACCURACY_RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "accuracy.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train, evaluate and reload the default model (what `make demo` runs)",
        description=f"Train {DEFAULT_MODEL} on real long-tailed Fashion-MNIST, print the many/medium/few table, "
        "load the run back with ltzoo.load, export fp32 + int8 ONNX and verify the tail on val/test, push to a "
        "local Hub stand-in and load it back from there. By default a short budget (" + str(DEMO_EPOCHS) + " epochs, "
        "minutes on 2 cores) shows the whole chain; --full trains the full recipe. A finished run in --out is "
        "reused; a killed one is resumed.",
    )
    p.add_argument("--out", help="run directory (default: runs/demo, with --full runs/demo_full)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--full",
        action="store_true",
        help="train the full recipe (the zoo's published budget; tens of minutes on 2 cores)",
    )
    budget.add_argument("--epochs", type=int, help=f"train this epoch budget instead (default {DEMO_EPOCHS})")
    p.add_argument("--data-root", help="dataset location (default: $LTZOO_DATA, then the system copy)")
    p.set_defaults(func=run)


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def run(args: argparse.Namespace) -> int:
    from ltzoo.preflight import check_data_root, check_out_dir

    out = check_out_dir(args.out or ("runs/demo_full" if args.full else "runs/demo"))
    check_data_root(args.data_root)
    import ltzoo

    entry = ltzoo.get_entry(DEFAULT_MODEL)
    epochs = None if args.full else (args.epochs or DEMO_EPOCHS)
    budget = train_step(entry, out, epochs, args.data_root)
    data, test_all = evaluate_step(out, args.data_root)
    if epochs is not None:
        print(
            f"\nThis was {budget}. {full_recipe_reaches(entry.name)}\nTrain the full recipe with "
            f"`ltzoo demo --full` (the whole chain) or `ltzoo train {entry.name} --out runs/ce`."
        )
    onnx_dir, variant = export_step(out, data, args.data_root)
    step("5. push to a Hub and load it back from there")
    publish_and_reload(out, data, test_all, onnx_dir=onnx_dir, onnx_variant=variant)
    print("\ndemo finished: the run is in", out)
    return 0


def train_step(entry: Any, out: Path, epochs: int | None, data_root: str | None) -> str:
    """Step 1: train the recipe (``epochs`` rescales it; None: the full recipe), or reuse a finished run of it.
    Returns the budget in words."""
    from ltzoo.engine.trainer import train
    from ltzoo.errors import LtzooError
    from ltzoo.names import CHECKPOINT_DIR, LAST_CHECKPOINT
    from ltzoo.recipe import same_recipe, scale_stages
    from ltzoo.runs import read_config

    recipe = entry.recipe()
    full_epochs = recipe.total_epochs
    if epochs is not None:
        recipe = recipe.replace(stages=scale_stages(recipe.stages, epochs))
    budget = (
        f"the full recipe, {full_epochs} epochs"
        if epochs is None
        else f"a short budget: {epochs} of the recipe's {full_epochs} epochs"
    )
    step(f"1. train {entry.name} ({budget}) -> {out}")
    finished = (out / "metrics.json").is_file()
    if finished and same_recipe(read_config(out)["ltzoo"].get("recipe") or {}, recipe.to_dict()):
        print(f"{out} already holds a finished run of this recipe; reusing it (delete it to retrain)")
    elif finished:
        raise LtzooError(f"{out} holds a run of another budget; pass another --out, or delete {out} to retrain")
    else:
        resume = (out / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file()
        train(recipe, out, name=entry.name, data_root=data_root, resume=resume)
    return budget


def evaluate_step(out: Path, data_root: str | None) -> tuple[Any, float]:
    """Steps 2 and 3: evaluate the run, load it back with ``ltzoo.load`` and compare. Returns the data and the
    test top-1 the reloaded model scored."""
    import ltzoo
    from ltzoo.data import build_dataset
    from ltzoo.engine.evaluator import TorchPredictor, evaluate_split, format_table
    from ltzoo.errors import LtzooError

    step("2. evaluate (top-1 %, model selected on val)")
    model, config = ltzoo.load(f"local-dir:{out}", with_config=True)
    data = build_dataset(config["ltzoo"]["dataset"], data_root)
    results = {split: evaluate_split(TorchPredictor(model), data, split) for split in ("val", "test")}
    print(format_table(results))
    shots = data.shots
    print(
        f"classes: many {shots.many}, medium {shots.medium}, few {shots.few} (>{shots.many_threshold} / "
        f"{shots.few_threshold}-{shots.many_threshold} / <{shots.few_threshold} training images)"
    )
    step("3. load it back with ltzoo.load and compare")
    recorded = config["ltzoo"]["metrics"]["test"]["all"]
    reloaded = results["test"]["all"]
    print(f"test top-1 recorded at training time {recorded:.2f} %, after ltzoo.load {reloaded:.2f} %")
    if abs(recorded - reloaded) > 1e-6:
        raise LtzooError("the reloaded model does not reproduce the recorded accuracy")
    return data, reloaded


def export_step(out: Path, data: Any, data_root: str | None) -> tuple[Path, str]:
    """Step 4: export fp32 + int8 with the per-split gate; if the gate refuses int8, export the verified fp32
    graph alone. Returns the folder of the graphs shipped and the variant to load back."""
    from ltzoo.cli.export import print_summary
    from ltzoo.export.pipeline import ExportOptions, export_with_int8_fallback

    step("4. export to ONNX (fp32 + int8 QDQ) and verify the tail on val and test")
    options = ExportOptions(verify="dataset", data_root=data_root)
    report, onnx_dir, variant, refusal = export_with_int8_fallback(f"local-dir:{out}", out / "onnx", options, data=data)
    if refusal is not None:
        # The gate doing its job is a result, not a crash: the val few-shot group of fmnist_lt has 100 images, so
        # one image is 1 pt, and an int8 graph that loses two of them is refused. The verified fp32 graph ships.
        print(
            f"the per-split gate refused int8 (it lost tail accuracy on val):\n{refusal}\n"
            f"exported fp32 only (verified on val and test) into {onnx_dir} and going on"
        )
    print_summary(report)
    print(explain_gate(report, variant))
    print(
        f"every check and the per-split gate passed for the graphs shipped; they and export_report.json are in "
        f"{onnx_dir}"
    )
    return onnx_dir, variant


def full_recipe_reaches(name: str) -> str:
    """What the full recipe of ``name`` measured on test (the accuracy benchmark's row), when known here."""
    try:
        row = json.loads(ACCURACY_RESULTS.read_text())["rows"][name]
    except (OSError, ValueError, KeyError):
        return "The full recipe's accuracy is in the README's results table."
    test = row["test"]
    mean = {group: sum(seed[group] for seed in test) / len(test) for group in ("all", "few")}
    return (
        f"The full recipe reaches test top-1 {mean['all']:.2f} % (few-shot {mean['few']:.2f} %), the mean of "
        f"{len(test)} seed(s) in benchmarks/results/accuracy.json."
    )


def explain_gate(report: Any, shipped: str) -> str:
    """What the per-split gate decided, in words: each graph is compared with the PyTorch model on val and test,
    overall and on the few-shot classes, and refused if it loses more than its threshold on any of them."""
    verification = report.verification
    thresholds = ", ".join(
        f"{variant} {points:g}" for variant, points in verification.max_drop.items() if variant in report.variants
    )
    lines = [
        f"The gate compares each graph with the PyTorch model on val and test, overall and on the few-shot "
        f"classes, and refuses a graph that loses more than its threshold (points: {thresholds})."
    ]
    for variant in report.variants:
        worst = {
            split: min(deltas[variant][group] for group in verification.gated_groups)
            for split, deltas in verification.deltas.items()
            if variant in deltas
        }
        if worst:
            drops = ", ".join(f"{split} {value:+.2f}" for split, value in worst.items())
            lines.append(
                f"  {variant}: worst change on {'/'.join(verification.gated_groups)} {drops} points -> "
                f"{'shipped' if variant == shipped or variant == 'fp32' else 'kept locally'}"
            )
    if shipped != "int8":
        lines.append(
            "  int8 was refused above, so the demo ships the verified fp32 graph: on fmnist_lt's val split one "
            "few-shot image is 1 point, and the int8 threshold is 1 point."
        )
    return "\n".join(lines)


@contextlib.contextmanager
def local_hub() -> Iterator[str]:
    """Start the local Hub stand-in (:mod:`ltzoo.testing.hub_server`) on a free port in its own process and
    point HF_ENDPOINT/HF_TOKEN/HF_HUB_CACHE at it."""
    from ltzoo.testing import hub_server

    token = secrets.token_hex(16)
    saved = {k: os.environ.get(k) for k in ("HF_ENDPOINT", "HF_TOKEN", "HF_HUB_CACHE")}
    with tempfile.TemporaryDirectory(prefix="ltzoo-demo-hub-") as state:
        # Run as a script by its path, not with -m: the server needs only the standard library and PyYAML,
        # and -m would import the ltzoo package (torch, timm) into the server process first.
        command = [sys.executable, hub_server.__file__, "--port", "0", "--token", token, "--data", state]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            url = server.stdout.readline().strip()  # type: ignore[union-attr]
            if not url.startswith("http"):
                raise RuntimeError("the local Hub server did not start")
            os.environ.update(
                {"HF_ENDPOINT": url, "HF_TOKEN": token, "HF_HUB_CACHE": str(Path(state) / "client-cache")}
            )
            yield url
        finally:
            for key, value in saved.items():
                os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
            server.terminate()
            server.wait(timeout=10)


def publish_and_reload(
    out: Path, data, expected_test_all: float, onnx_dir: Path | None, onnx_variant: str = "int8"
) -> None:
    import ltzoo
    from ltzoo.engine.evaluator import TorchPredictor, evaluate_split
    from ltzoo.errors import LtzooError

    repo_id = f"ltzoo-org/{DEFAULT_MODEL}"
    with local_hub() as url:
        print(
            f"NOTE: {url} is a local stand-in for huggingface.co (ltzoo.testing.hub_server), so the demo needs no "
            "network.\n"
            "To publish for real: python export/push_to_hub.py --model RUN --repo-id ORG/NAME with HF_TOKEN set "
            "(or --token), and --endpoint for a Hub other than huggingface.co."
        )
        commit = ltzoo.push_to_hub(out, repo_id, onnx_dir=onnx_dir)
        print(f"pushed {out} -> {repo_id} ({commit})")
        model = ltzoo.load(f"hf-hub:{repo_id}")
        result = evaluate_split(TorchPredictor(model), data, "test")
        print(
            f"loaded hf-hub:{repo_id} from a fresh cache: test top-1 {result['all']:.2f} % "
            f"(trained: {expected_test_all:.2f} %)"
        )
        if abs(result["all"] - expected_test_all) > 1e-6:
            raise LtzooError("the model loaded from the Hub does not reproduce the recorded accuracy")
        if onnx_dir is not None:
            from ltzoo.engine.evaluator import OrtPredictor

            session = ltzoo.load_onnx_session(f"hf-hub:{repo_id}", variant=onnx_variant)
            scored = evaluate_split(OrtPredictor(session), data, "test")
            print(
                f"ltzoo.load_onnx_session(hf-hub:{repo_id}, variant='{onnx_variant}') on ONNX Runtime: test top-1 "
                f"{scored['all']:.2f} %, few-shot {scored['few']:.2f} %"
            )
