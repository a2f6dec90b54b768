"""The GPU check: ltzoo's CUDA path on one GPU, measured in one command of at most 8 minutes.

On a GPU machine (its own python3 and packages, nothing installed, ltzoo from the checkout)::

    .venv/bin/python -m benchmarks.gpu --make-bundle .gpu_bundle    # here: what travels (about 40 MiB)
    PYTHONPATH=. python3 -m benchmarks.gpu --bundle .gpu_bundle [--results-dir DIR]   # there

The bundle (git-ignored) holds the Fashion-MNIST files and the pure-Python packages a bare GPU image
lacks for the check (pytest for the CUDA tests, onnxscript for the default exporter), copied from this
environment. They go at the *end* of ``sys.path``: the GPU machine's own packages always win.

and anywhere, to keep the script from rotting between GPU runs (the same code on the CPU, tiny sizes)::

    .venv/bin/python -m benchmarks.gpu --dry-run

A rehearsal on the GPU image's torch and packages only (PyPI's torch 2.11 runs on a CPU too)::

    python3 -m venv /tmp/gpu-image && /tmp/gpu-image/bin/pip install "torch==2.11.*" "torchvision==0.26.*" \
        timm onnx onnxruntime huggingface_hub safetensors      # PIP_CONSTRAINT= if a constraint caps torch
    PYTHONPATH=. /tmp/gpu-image/bin/python -m benchmarks.gpu --dry-run --bundle .gpu_bundle --results-dir /tmp/r

The results come back from the GPU machine in DIR: copy ``gpu.json`` and ``gpu.md`` into
``benchmarks/results/`` and run ``python -m benchmarks.report`` to render them into REPORT.md and the README.

Sections, in this order; each is recorded even when another fails, and the results are rewritten after
every section, so a run cut short still leaves what it measured:

1. ``environment``: torch, CUDA, cuDNN, the GPU; every ltzoo module imported (which fail, and why: this
   is what "ltzoo runs on this machine's torch" means before anything trains); packages missing.
2. ``steps``: one training step of ``ce_resnet50.imagenet_lt`` and ``dscl_pbsd_resnet50.imagenet_lt``
   (the method's own ``training_step``, optimizer and scaler, as the trainer runs them) on a synthetic
   224-px ImageNet-LT-shaped batch (1000 classes) at the recipe's batch size, halved until it fits:
   fp32 (PyTorch's default math: cuDNN may use TF32), fp32 without TF32, and the fast path (bf16
   autocast + channels_last); images/s, peak GPU memory, bf16 vs fp32, DSCL + PBSD vs CE.
3. ``fmnist_ce``: ``ce_resnet32.fmnist_lt`` at its full recipe on the GPU (``ltzoo.train`` with
   ``device="cuda"``): wall time and test all/many/medium/few against the CPU table's seeds. The CUDA
   tests (6.) run beside it, in their own process, to fit the 8 minutes.
4. ``input_pipeline``: the trainer's images/s in that run against a bare step of the same model, batch
   and precision on a batch already on the GPU, and the data loader alone: the share of a GPU
   epoch spent waiting for input.
5. ``export_gate``: ``ltzoo eval --device cuda`` against ``--device cpu``, then the export's per-split
   gate with the PyTorch reference on CUDA and on the CPU, the graph on ONNX Runtime (CPU) both times:
   the agreement must be the same.
6. ``cuda_tests``: ``pytest -m gpu tests/test_cuda.py``: what the tests that skip without a GPU found.

Writes ``benchmarks/results/gpu.json`` and ``gpu.md`` (``gpu_quick.*`` with ``--dry-run``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import pkgutil
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, ROOT, markdown_table, mean_std, write_results

# Pure-Python distributions the bundle carries (the GPU image's own python3 may lack them): pytest and its
# requirements for the CUDA tests, onnxscript and onnx_ir for the dynamo exporter (numpy, onnx, ml_dtypes
# and sympy, which they also need, come with the image's torch and onnx).
BUNDLE_DISTRIBUTIONS = (
    "pytest",
    "pluggy",
    "iniconfig",
    "pygments",
    "packaging",
    "onnxscript",
    "onnx_ir",
    "typing_extensions",
)
BUNDLE_LIMIT_MIB = 64  # what the device tool carries, the checkout included

STEP_RECIPES = ("ce_resnet50.imagenet_lt", "dscl_pbsd_resnet50.imagenet_lt")
FMNIST_CE = "ce_resnet32.fmnist_lt"
TARGET_BF16_VS_FP32 = 2.0  # ce_resnet50, bf16 + channels_last against fp32
TARGET_DSCL_PBSD_VS_CE = 2.5  # a DSCL + PBSD step against a CE step
BUDGET_S = 480
STEPS_SHARE = 0.3  # of the budget: the training-step section stops starting settings after this
# Packages the export and selection paths import that a GPU image may lack: reported, never installed.
OPTIONAL_PACKAGES = ("optuna", "onnxconverter_common", "polygraphy", "onnxscript", "timm", "onnxruntime", "matplotlib")
GROUPS = ("all", "many", "medium", "few")


@dataclass(frozen=True)
class Sizes:
    """What the run measures at: the real sizes on a GPU, tiny ones in ``--dry-run`` (same code)."""

    device: str
    image_px: int  # the synthetic ImageNet-LT batch's side
    batch_cap: int | None  # None: the recipe's batch size
    warmup_steps: int
    timed_steps: int
    fmnist_epochs: int | None  # None: the recipe's full budget
    fmnist_steps_per_epoch: int | None
    splits: tuple[str, ...]  # the export gate's splits


GPU_SIZES = Sizes("cuda", 224, None, 3, 10, None, None, ("val", "test"))
DRY_SIZES = Sizes("cpu", 32, 8, 1, 1, 2, 2, ("val",))  # 32 px: bf16 is emulated (slow) on many CPUs


class Clock:
    """The run's budget: sections ask how much is left before they start."""

    def __init__(self, budget_s: float) -> None:
        self.start, self.budget_s = time.perf_counter(), budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed()


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ----- 1. environment ------------------------------------------------------------------------------
def environment(device: str) -> dict[str, Any]:
    import torch

    import ltzoo
    from ltzoo.precision import native_bf16

    failed: dict[str, str] = {}
    modules = 0
    for module in pkgutil.walk_packages(ltzoo.__path__, "ltzoo.", onerror=lambda name: None):
        if module.name.endswith("__main__"):
            continue  # `python -m ltzoo`: importing it would run the command line
        modules += 1
        try:
            importlib.import_module(module.name)
        except Exception as error:  # report every module that does not import here, and go on
            failed[module.name] = f"{type(error).__name__}: {error}"
    packages = {}
    for name in OPTIONAL_PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_count": torch.cuda.device_count(),
        "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if cuda else None,
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "native_bf16": native_bf16(torch.device(device)),
        "cudnn_allow_tf32_default": torch.backends.cudnn.allow_tf32,
        "ltzoo": ltzoo.__version__,
        "ltzoo_modules": modules,
        "ltzoo_modules_failed": failed,
        "packages": packages,
    }


# ----- 2. training steps on synthetic ImageNet-LT batches ------------------------------------------
class _SyntheticImages:
    """``n`` random RGB images (PIL, like the ImageNet-LT loader gives) with random labels of 1000 classes."""

    def __init__(self, n: int, side: int, num_classes: int) -> None:
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(0)
        self.images = [
            Image.fromarray(rng.integers(0, 256, (side, side * 5 // 4, 3), dtype=np.uint8)) for _ in range(n)
        ]
        self.targets = rng.integers(0, num_classes, n).tolist()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.images[index], self.targets[index]


def _step_setup(name: str, sizes: Sizes, batch: int, channels_last: bool) -> tuple[Any, Any, Any, Any]:
    """The recipe's first-stage objective, optimizer and one real batch (the method's own transform)."""
    import dataclasses

    import torch
    from torch.utils.data import DataLoader

    from ltzoo.data.datasets import TransformedDataset
    from ltzoo.data.spec import dataset_spec
    from ltzoo.engine.objective import StageContext, get_method
    from ltzoo.memory_format import batch_to, module_to
    from ltzoo.models import build_model
    from ltzoo.registry import get_entry

    torch.manual_seed(0)
    recipe = get_entry(name).recipe()
    stage = dataclasses.replace(recipe.stages[0], batch_size=batch)
    info = dataclasses.replace(dataset_spec(recipe.dataset), input_size=(sizes.image_px, sizes.image_px))
    device = torch.device(sizes.device)
    ctx = StageContext(recipe=recipe, stage=stage, stage_index=0, data=info, steps_per_epoch=100, device=device)
    model = build_model(recipe.arch, info.num_classes, in_chans=info.in_chans, head=recipe.head).to(device)
    module_to(model, channels_last)
    objective = get_method(recipe.method)(model, ctx).to(device)
    module_to(objective, channels_last)
    images = _SyntheticImages(batch, sizes.image_px * 8 // 7, info.num_classes)

    def make_loader(sampler: str, transform: Callable[[Any], Any]) -> DataLoader:
        return DataLoader(TransformedDataset(images, transform), batch_size=batch, shuffle=False)

    data = batch_to(next(iter(objective.train_loader(make_loader))), device, channels_last)
    optimizer = torch.optim.SGD(objective.param_groups(), lr=stage.lr * 0.01, momentum=stage.momentum)
    return model, objective, optimizer, data


def _time_steps(name: str, sizes: Sizes, batch: int, precision: str, channels_last: bool, tf32: bool) -> dict:
    """Median step time of the trainer's step (autocast, scaler, optimizer, the objective's hooks)."""
    import contextlib

    import torch

    from ltzoo.precision import autocast, exact_fp32, grad_scaler

    model, objective, optimizer, data = _step_setup(name, sizes, batch, channels_last)
    objective.set_train_mode()
    scaler = grad_scaler(precision, sizes.device)
    cuda = sizes.device.startswith("cuda")
    if cuda:
        torch.backends.cudnn.benchmark = True  # as the trainer sets it (the warm-up steps pay for the search)
        torch.cuda.reset_peak_memory_stats()
    times = []
    with contextlib.nullcontext() if tf32 else exact_fp32(sizes.device):
        for step in range(sizes.warmup_steps + sizes.timed_steps):
            _sync(sizes.device)
            start = time.perf_counter()
            with autocast(precision, sizes.device):
                out = objective.training_step(data, 0)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(out.loss.float()).backward()
            scaler.step(optimizer)
            scaler.update()
            objective.after_optimizer_step()
            _sync(sizes.device)
            if step >= sizes.warmup_steps:
                times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    del model, objective, optimizer, data
    if cuda:
        torch.cuda.empty_cache()
    return {"batch": batch, "step_s": step_s, "images_per_s": batch / step_s, "peak_gpu_gib": peak}


STEP_SETTINGS = {
    # label: (precision, channels_last, TF32 allowed)
    "fp32": ("fp32", False, True),  # PyTorch's default fp32: cuDNN may run convolutions in TF32
    "fp32_no_tf32": ("fp32", False, False),
    "bf16_channels_last": ("bf16", True, True),  # ltzoo's default on a GPU with native bf16
}


def measure_step(name: str, label: str, sizes: Sizes) -> dict[str, Any]:
    """One setting of one recipe at the largest batch that fits (the recipe's, halved on out-of-memory)."""
    import torch

    from ltzoo.precision import native_bf16
    from ltzoo.registry import get_entry

    precision, channels_last, tf32 = STEP_SETTINGS[label]
    if precision == "bf16" and not native_bf16(torch.device(sizes.device)):
        precision = "fp32"  # emulated bf16 times the emulation, not the fast path (the row records this)
    batch = get_entry(name).recipe().stages[0].batch_size
    if sizes.batch_cap:
        batch = min(batch, sizes.batch_cap)
    while True:
        try:
            timed = _time_steps(name, sizes, batch, precision, channels_last, tf32)
            return {"name": name, "setting": label, "precision": precision, **timed}
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if batch <= 8:
                raise
            batch //= 2


def steps_section(sizes: Sizes, clock: Clock) -> dict[str, Any]:
    """Each recipe in each setting, most telling first; settings left when the section's share of the budget
    is spent are recorded as skipped, so the fmnist_lt run after it still fits."""
    rows, skipped = [], []
    ce, dscl = STEP_RECIPES
    order = [
        (ce, "bf16_channels_last"),
        (ce, "fp32"),
        (dscl, "bf16_channels_last"),
        (ce, "fp32_no_tf32"),
        (dscl, "fp32"),
    ]
    for name, label in order:
        if clock.elapsed() > STEPS_SHARE * clock.budget_s:
            skipped.append(f"{name} {label}")
            continue
        rows.append(measure_step(name, label, sizes))
        print(f"[gpu] step {name} {label}: {rows[-1]['images_per_s']:.0f} img/s", flush=True)
    by = {(r["name"], r["setting"]): r for r in rows}

    def slower(a: tuple[str, str], b: tuple[str, str]) -> float | None:
        """How many times longer a step of ``a`` takes than one of ``b``, per image (None if one was skipped)."""
        if a not in by or b not in by:
            return None
        return (by[a]["step_s"] / by[a]["batch"]) / (by[b]["step_s"] / by[b]["batch"])

    fast = "bf16_channels_last"
    ratios = {
        "ce_bf16_vs_fp32": slower((ce, "fp32"), (ce, fast)),
        "ce_bf16_vs_fp32_no_tf32": slower((ce, "fp32_no_tf32"), (ce, fast)),
        "dscl_pbsd_vs_ce": slower((dscl, fast), (ce, fast)),
        "dscl_pbsd_vs_ce_fp32": slower((dscl, "fp32"), (ce, "fp32")),
    }
    return {"rows": rows, "ratios": ratios, "skipped": skipped, "image_px": sizes.image_px}


# ----- 3. fmnist_lt CE at its full recipe, with the CUDA tests beside it ---------------------------
def cpu_table_row(results_dir: Path) -> dict[str, Any] | None:
    """CE's test scores per seed in the committed CPU accuracy table (None without one)."""
    path = results_dir / "accuracy.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    row = data.get("rows", {}).get(FMNIST_CE)
    if data.get("quick") or not row:
        return None
    per_seed = row["test"]
    summary = {}
    for group in GROUPS:
        values = [seed[group] for seed in per_seed]
        mean, std = mean_std(values)
        summary[group] = {"mean": mean, "std": std, "min": min(values), "max": max(values)}
    return {"seeds": row["seeds"], "machine": data.get("machine", {}).get("cpu"), "test": summary}


def fmnist_ce_section(sizes: Sizes, work: Path) -> dict[str, Any]:
    from ltzoo.engine.trainer import train
    from ltzoo.registry import get_entry

    entry = get_entry(FMNIST_CE)
    out = work / "ce_fmnist_gpu"
    start = time.perf_counter()
    metrics = train(
        entry.recipe(),
        out,
        name=entry.name,
        device=sizes.device,
        epochs=sizes.fmnist_epochs,
        steps_per_epoch=sizes.fmnist_steps_per_epoch,
    )
    wall = time.perf_counter() - start
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    table = cpu_table_row(RESULTS_DIR)  # the committed CPU table, wherever this run writes its own results
    test = {group: metrics["test"][group] for group in GROUPS}
    verdict = None
    if table is not None:
        spread = table["test"]["all"]
        verdict = {
            "delta_all": test["all"] - spread["mean"],
            "within_std": abs(test["all"] - spread["mean"]) <= spread["std"],
            "within_seed_range": spread["min"] <= test["all"] <= spread["max"],
        }
    return {
        "run": str(out),
        "epochs": len(log),
        "precision": metrics["precision"],
        "wall_s": wall,
        "train_time_s": metrics["train_time_s"],
        "test": test,
        "cpu_table": table,
        "verdict": verdict,
        "epoch_images_per_s": [line["images_per_s"] for line in log],
    }


def start_cuda_tests(log_path: Path) -> subprocess.Popen[bytes]:
    """``pytest -m gpu tests/test_cuda.py`` in its own process (it runs beside the fmnist_lt training)."""
    env = {**_child_env(), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests/test_cuda.py"]
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def finish_cuda_tests(proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> dict[str, Any]:
    try:
        code = proc.wait(timeout=max(timeout_s, 1))
    except subprocess.TimeoutExpired:
        proc.kill()
        code = None
    output = log_path.read_text(errors="replace")
    # pytest -q ends with e.g. "4 passed, 1 skipped, 7 deselected in 52.10s"
    summary = next((line for line in reversed(output.splitlines()) if re.search(r"\d+ \w+.* in [\d.]+s", line)), "")
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary)}
    return {
        "returncode": code,
        "timed_out": code is None,
        "summary": summary.strip(),
        "counts": counts,
        "output_tail": output[-4000:],
    }


# ----- 4. does the input pipeline feed the GPU? ----------------------------------------------------
def bare_step_images_per_s(sizes: Sizes, precision: str, channels_last: bool, batch: int, steps: int) -> float:
    """CE's step on a batch already on the device: the trainer's step without any input to wait for."""
    import torch
    import torch.nn.functional as F

    from ltzoo.memory_format import batch_to, module_to
    from ltzoo.models import build_model
    from ltzoo.precision import autocast

    torch.manual_seed(0)
    device = torch.device(sizes.device)
    model = module_to(build_model("resnet32", 10, in_chans=1).to(device).train(), channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = batch_to(torch.randn(batch, 1, 28, 28), device, channels_last)
    labels = torch.randint(0, 10, (batch,), device=device)
    for step in range(sizes.warmup_steps + steps):
        if step == sizes.warmup_steps:
            _sync(sizes.device)
            start = time.perf_counter()
        with autocast(precision, device):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()  # the trainer reads every step's loss too
    _sync(sizes.device)
    return batch * steps / (time.perf_counter() - start)


def loader_images_per_s(batch: int, steps: int, workers: int) -> float:
    """The fmnist_lt training loader alone (the recipe's per-sample augmentation), no model."""
    from torch.utils.data import DataLoader

    from ltzoo.data import build_dataset
    from ltzoo.data.datasets import TransformedDataset
    from ltzoo.data.transforms import train_transform

    data = build_dataset("fmnist_lt")
    loader = DataLoader(
        TransformedDataset(data.train, train_transform(data.info)), batch_size=batch, shuffle=True, num_workers=workers
    )
    seen, start = 0, time.perf_counter()
    for index, (images, _) in enumerate(loader):
        seen += len(images)
        if index + 1 >= steps:
            break
    return seen / (time.perf_counter() - start)


def input_pipeline_section(sizes: Sizes, fmnist: dict[str, Any]) -> dict[str, Any]:
    from ltzoo.registry import get_entry

    recipe = get_entry(FMNIST_CE).recipe()
    batch = recipe.stages[0].batch_size
    channels_last = sizes.device.startswith("cuda")  # what auto chose for the run on this device
    per_epoch = fmnist["epoch_images_per_s"][1:] or fmnist["epoch_images_per_s"]  # epoch 1 pays for warm-up
    trainer = statistics.median(per_epoch)
    steps = 5 if sizes.fmnist_epochs else 50
    bare = bare_step_images_per_s(sizes, fmnist["precision"], channels_last, batch, steps)
    loader = {
        f"workers_{workers}": loader_images_per_s(batch, 3 if sizes.fmnist_epochs else 30, workers)
        for workers in sorted({recipe.num_workers, min(4, os.cpu_count() or 1)})
    }
    return {
        "batch": batch,
        "recipe_num_workers": recipe.num_workers,
        "trainer_images_per_s": trainer,
        "bare_step_images_per_s": bare,
        "waiting_share": max(0.0, 1 - trainer / bare),
        "loader_alone_images_per_s": loader,
    }


# ----- 5. eval and the export gate with the PyTorch reference on the GPU ---------------------------
def _eval_cli(run: str, device: str, split: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "ltzoo", "eval", run, "--split", split, "--device", device, "--json"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=_child_env())
    if done.returncode != 0:
        raise RuntimeError(f"ltzoo eval --device {device} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def _agreement(run: str, onnx_path: Path, device: str, split: str) -> dict[str, Any]:
    """PyTorch on ``device`` against the fp32 graph on ONNX Runtime (CPU), image by image."""
    import numpy as np

    from ltzoo.data import build_dataset, eval_transform
    from ltzoo.engine.evaluator import OrtPredictor, TorchPredictor, predict
    from ltzoo.export.providers import create_session
    from ltzoo.loading import load

    model, config = load(run, with_config=True)
    data = build_dataset(config["ltzoo"]["dataset"])
    transform = eval_transform(data.info)
    torch_logits, _ = predict(TorchPredictor(model, device), data.split(split), transform)
    ort_logits, _ = predict(OrtPredictor(create_session(onnx_path, "cpu")), data.split(split), transform)
    return {
        "split": split,
        "top1_agreement": float((torch_logits.argmax(1) == ort_logits.argmax(1)).mean()),
        "max_abs_logit_diff": float(np.abs(torch_logits - ort_logits).max()),
    }


def export_gate_section(sizes: Sizes, run: str, work: Path) -> dict[str, Any]:
    from ltzoo.export import ExportOptions, export

    devices = list(dict.fromkeys((sizes.device, "cpu")))  # one device in --dry-run
    # ltzoo's default exporter needs onnxscript; without it (and no bundle) the older one still checks the gate
    exporter = "dynamo" if importlib.util.find_spec("onnxscript") else "torchscript"
    evals = {device: _eval_cli(run, device, sizes.splits[-1]) for device in devices}
    result: dict[str, Any] = {
        "eval": {device: {g: scores[g] for g in GROUPS} for device, scores in evals.items()},
        "eval_max_diff": max(abs(evals[sizes.device][g] - evals["cpu"][g]) for g in GROUPS),
        "gate": {},
        "exporter": exporter,
    }
    for device in devices:
        options = ExportOptions(verify="dataset", device=device, provider="cpu", splits=sizes.splits, exporter=exporter)
        out = work / f"onnx_reference_{device.replace(':', '')}"
        report = export(run, out, options)
        result["gate"][device] = {
            "passed": report.passed,
            "failures": [str(f) for f in report.failures],
            "parity_passed": report.variants["fp32"].checks["parity"].passed,
            "reference_device": report.verification.reference_device,
            "deltas_fp32": {split: rows["fp32"] for split, rows in report.verification.deltas.items()},
            "agreement": _agreement(run, out / "model.onnx", device, sizes.splits[-1]),
        }
    return result


# ----- the report ----------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(report: dict[str, Any]) -> str:
    env = report["sections"].get("environment", {}).get("result") or {}
    where = env.get("gpu") or "no GPU (dry run on the CPU)"
    lines = [
        f"## GPU check ({where}; torch {env.get('torch', '?')}, CUDA {env.get('cuda_runtime') or '-'})",
        "",
        "`python -m benchmarks.gpu` on a GPU machine"
        + (" (**dry run: tiny sizes on the CPU, not results**)" if report["dry_run"] else "")
        + f"; {report['elapsed_s']:.0f} s of its {report['budget_s']:.0f} s budget.",
        "",
    ]
    for name, renderer in SECTION_RENDERERS.items():
        section = report["sections"].get(name)
        if section is None:
            lines += [f"### {name}", "", "not run (out of time)", ""]
        elif section.get("error"):
            lines += [f"### {name}", "", f"FAILED: `{section['error'].strip().splitlines()[-1]}`", ""]
        else:
            lines += renderer(section["result"]) + [""]
    return "\n".join(lines)


def _render_environment(env: dict[str, Any]) -> list[str]:
    failed = env["ltzoo_modules_failed"]
    missing = [name for name, version in env["packages"].items() if version is None]
    return [
        "### environment",
        "",
        f"- GPU: {env['gpu'] or '-'} (compute {env['compute_capability'] or '-'}, {env['gpu_memory_gib'] or '-'} GiB), "
        f"native bf16: {env['native_bf16']}, cuDNN {env['cudnn'] or '-'}; torch {env['torch']}, ltzoo {env['ltzoo']}.",
        f"- ltzoo modules imported: {env['ltzoo_modules'] - len(failed)} of {env['ltzoo_modules']}"
        + (": " + "; ".join(f"`{k}` ({v})" for k, v in sorted(failed.items())) if failed else "."),
        f"- packages missing here: {', '.join(missing) or 'none'}.",
    ]


def _render_steps(steps: dict[str, Any]) -> list[str]:
    ratios = steps["ratios"]
    table = markdown_table(
        ["recipe", "setting", "ran in", "batch", "images/s", "step (ms)", "peak GPU memory (GiB)"],
        [
            [
                r["name"],
                r["setting"],
                r["precision"],
                r["batch"],
                f"{r['images_per_s']:.0f}",
                f"{1000 * r['step_s']:.1f}",
                _fmt(r["peak_gpu_gib"], 1),
            ]
            for r in steps["rows"]
        ],
    )
    bf16, dscl = ratios["ce_bf16_vs_fp32"], ratios["dscl_pbsd_vs_ce"]
    native = all(r["precision"] == "bf16" for r in steps["rows"] if r["setting"] == "bf16_channels_last")
    if bf16 is None:
        bf16_verdict = "not measured (skipped: the budget ran out)"
    elif not native:
        bf16_verdict = f"{bf16:.2f}x, not a measure of bf16: no native bf16 here"
    else:
        no_tf32 = _fmt(ratios["ce_bf16_vs_fp32_no_tf32"])
        bf16_verdict = (
            f"**{bf16:.2f}x** against PyTorch's default fp32 (cuDNN may use TF32), {no_tf32}x against fp32 "
            "without TF32 -> " + ("met" if bf16 >= TARGET_BF16_VS_FP32 else "NOT met")
        )
    if dscl is None:
        dscl_verdict = "not measured (skipped: the budget ran out)"
    else:
        dscl_verdict = (
            f"**{dscl:.2f}x** -> {'met' if dscl <= TARGET_DSCL_PBSD_VS_CE else 'NOT met'} "
            f"(fp32: {_fmt(ratios['dscl_pbsd_vs_ce_fp32'])}x; on the CPU it is 3.34x)"
        )
    lines = [
        f"### training step (synthetic {steps['image_px']}-px ImageNet-LT batches, 1000 classes)",
        "",
        table,
        "",
        f"- Target: CE bf16 + channels_last >= {TARGET_BF16_VS_FP32:.0f}x fp32: {bf16_verdict}.",
        f"- Target: a DSCL + PBSD step <= {TARGET_DSCL_PBSD_VS_CE}x a CE step (per image, bf16 + channels_last): "
        f"{dscl_verdict}.",
    ]
    if steps["skipped"]:
        lines.append(f"- Skipped when the section's share of the budget was spent: {', '.join(steps['skipped'])}.")
    return lines


def _render_fmnist(run: dict[str, Any]) -> list[str]:
    table, verdict = run["cpu_table"], run["verdict"]
    cpu = table["test"] if table else {}
    rows = [["GPU, seed 0", *(f"{run['test'][g]:.2f}" for g in GROUPS)]]
    if table:
        rows.append(
            [f"CPU table, seeds {table['seeds']}", *(f"{cpu[g]['mean']:.2f} ± {cpu[g]['std']:.2f}" for g in GROUPS)]
        )
    lines = [
        f"### {FMNIST_CE} at its full recipe on the GPU",
        "",
        markdown_table(["run", *GROUPS], rows),
        "",
        f"- {run['epochs']} epochs, {run['precision']}, wall {run['wall_s'] / 60:.1f} min "
        "(the CUDA tests ran beside it in their own process).",
    ]
    if verdict:
        lines.append(
            f"- Target: within the CPU table's seed spread: {verdict['delta_all']:+.2f} points from its mean -> "
            + ("met (within ± std)" if verdict["within_std"] else "NOT met (outside ± std)")
            + ("; inside the seeds' range" if verdict["within_seed_range"] else "; outside the seeds' range")
            + "."
        )
    return lines


def _render_pipeline(pipe: dict[str, Any]) -> list[str]:
    loader = ", ".join(f"{k.split('_')[1]} workers {v:.0f} img/s" for k, v in pipe["loader_alone_images_per_s"].items())
    return [
        "### does the input pipeline feed the GPU?",
        "",
        f"- trainer {pipe['trainer_images_per_s']:.0f} img/s (median epoch) against a bare step on the device of "
        f"the same model, batch and precision {pipe['bare_step_images_per_s']:.0f} img/s: "
        f"**{100 * pipe['waiting_share']:.0f} %** of a GPU epoch is spent waiting for input.",
        f"- the loader alone (per-sample augmentation; the recipe uses {pipe['recipe_num_workers']} workers): "
        f"{loader}.",
    ]


def _render_gate(gate: dict[str, Any]) -> list[str]:
    rows = [
        [
            device,
            "passed" if g["passed"] else "FAILED",
            "ok" if g["parity_passed"] else "FAILED",
            "; ".join(f"{split} {d['all']:+.2f}/{d['few']:+.2f}" for split, d in g["deltas_fp32"].items()),
            f"{100 * g['agreement']['top1_agreement']:.2f} %",
            f"{g['agreement']['max_abs_logit_diff']:.1e}",
        ]
        for device, g in gate["gate"].items()
    ]
    return [
        "### eval and the export gate with the PyTorch reference on the GPU",
        "",
        f"- `ltzoo eval --device` GPU vs CPU: largest difference {gate['eval_max_diff']:.2f} points over "
        f"all/many/medium/few. Graphs from the {gate['exporter']} exporter.",
        "",
        markdown_table(
            ["reference on", "gate", "fp32 parity", "ORT - PyTorch (all/few)", "top-1 agreement", "max |logit diff|"],
            rows,
        ),
    ]


def _render_tests(tests: dict[str, Any]) -> list[str]:
    return [
        "### CUDA tests (`pytest -m gpu tests/test_cuda.py`)",
        "",
        f"- {tests['summary'] or 'no summary line'}" + (" (timed out)" if tests["timed_out"] else ""),
    ]


SECTION_RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "environment": _render_environment,
    "steps": _render_steps,
    "fmnist_ce": _render_fmnist,
    "input_pipeline": _render_pipeline,
    "export_gate": _render_gate,
    "cuda_tests": _render_tests,
}


# ----- what travels to the GPU machine -------------------------------------------------------------
def _child_env() -> dict[str, str]:
    """The environment of the processes this run starts: the checkout first, then what PYTHONPATH held."""
    paths = [str(ROOT), *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


def _distribution_files(name: str) -> list[tuple[Path, Path]]:
    """(installed file, path relative to site-packages) of every file of one installed distribution."""
    dist = importlib.metadata.distribution(name)
    files = []
    for entry in dist.files or []:
        if "__pycache__" in entry.parts or entry.suffix == ".pyc" or ".." in entry.parts:
            continue  # caches are rebuilt there; '..' entries are scripts outside site-packages
        if entry.suffix in (".so", ".pyd"):
            raise SystemExit(f"benchmarks.gpu: {name} has a compiled file ({entry}): only pure Python can travel")
        files.append((Path(dist.locate_file(entry)), Path(entry)))
    return files


def make_bundle(folder: Path, data_root: str | None = None) -> dict[str, Any]:
    """Copy the Fashion-MNIST files into ``folder/data`` and the pure-Python packages into ``folder/site``."""
    import shutil

    from ltzoo.data.fmnist import locate_fashion_mnist

    data_files = locate_fashion_mnist(data_root)  # fails here, naming the fix, if there is no copy
    if folder.exists():
        if not (folder / "bundle.json").is_file():  # never delete a folder this command did not make
            raise SystemExit(f"benchmarks.gpu: {folder} exists and is not a bundle; give a new folder")
        shutil.rmtree(folder)
    (folder / "data").mkdir(parents=True)
    for source in data_files.values():
        shutil.copy2(source, folder / "data" / source.name)
    versions = {}
    for name in BUNDLE_DISTRIBUTIONS:
        for source, relative in _distribution_files(name):
            target = folder / "site" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        versions[name] = importlib.metadata.version(name)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    if size > BUNDLE_LIMIT_MIB * 2**20:
        raise SystemExit(f"benchmarks.gpu: the bundle is {size / 2**20:.0f} MiB, over {BUNDLE_LIMIT_MIB} MiB")
    summary = {"folder": str(folder), "mib": round(size / 2**20, 1), "packages": versions}
    (folder / "bundle.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def use_bundle(folder: Path) -> Path:
    """Put the bundle's packages after the machine's own (here and in the processes this run starts);
    return its data folder."""
    site = folder.resolve() / "site"
    if not (folder / "bundle.json").is_file() or not site.is_dir():
        raise SystemExit(f"benchmarks.gpu: {folder} is not a bundle; make one with --make-bundle {folder}")
    sys.path.append(str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(site)) if p)
    return folder.resolve() / "data"


# ----- the run -------------------------------------------------------------------------------------
def _run_section(report: dict[str, Any], name: str, function: Callable[[], Any], save: Callable[[], None]) -> Any:
    """Run one section; its result or its traceback goes into the report, which is saved at once."""
    start = time.perf_counter()
    print(f"[gpu] {name} ...", flush=True)
    try:
        result = function()
        report["sections"][name] = {"result": result, "seconds": time.perf_counter() - start}
    except Exception:  # one failing section must not lose the others' figures
        report["sections"][name] = {"error": traceback.format_exc(), "seconds": time.perf_counter() - start}
        print(report["sections"][name]["error"], file=sys.stderr, flush=True)
        result = None
    save()
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The GPU check: training steps, fmnist_lt CE, the input pipeline, eval and the export gate on "
        "CUDA, and the CUDA tests, in one run (see the module docstring)."
    )
    parser.add_argument("--dry-run", action="store_true", help="the same code on the CPU at tiny sizes (CI)")
    parser.add_argument(
        "--data-root", help="folder with the Fashion-MNIST idx files (default: $LTZOO_DATA, then the system copy)"
    )
    parser.add_argument(
        "--make-bundle",
        type=Path,
        metavar="DIR",
        help="write what a GPU machine needs into DIR (the data files and pure-Python packages) and stop",
    )
    parser.add_argument(
        "--bundle", type=Path, metavar="DIR", help="run with a bundle made by --make-bundle (its data and packages)"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where gpu.json and gpu.md go (default: benchmarks/results)",
    )
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help=f"time budget (default {BUDGET_S} s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from ltzoo.data.fmnist import locate_fashion_mnist

    if args.make_bundle:
        bundle = make_bundle(args.make_bundle, args.data_root)
        print(json.dumps(bundle, indent=2))
        return bundle
    if args.bundle:
        if args.data_root:
            raise SystemExit("benchmarks.gpu: give --bundle or --data-root, not both (the bundle holds the data)")
        args.data_root = str(use_bundle(args.bundle))
    if args.data_root:  # every process this run starts (eval, the tests) reads the same copy
        locate_fashion_mnist(args.data_root)  # a folder without the files fails here, before anything runs
        os.environ["LTZOO_DATA"] = str(Path(args.data_root).resolve())
    else:
        locate_fashion_mnist()
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu: no CUDA GPU here (torch.cuda.is_available() is False); use --dry-run")
    sizes = DRY_SIZES if args.dry_run else GPU_SIZES
    clock = Clock(args.budget_s)
    report: dict[str, Any] = {"quick": args.dry_run, "dry_run": args.dry_run, "budget_s": args.budget_s, "sections": {}}

    def save() -> None:
        report["elapsed_s"] = clock.elapsed()
        write_results("gpu", report, render(report), args.results_dir)

    with tempfile.TemporaryDirectory(prefix="ltzoo-gpu-") as tmp:
        work = Path(tmp)
        _run_section(report, "environment", lambda: environment(sizes.device), save)
        _run_section(report, "steps", lambda: steps_section(sizes, clock), save)
        tests_log = work / "cuda_tests.log"
        tests = start_cuda_tests(tests_log)
        fmnist = _run_section(report, "fmnist_ce", lambda: fmnist_ce_section(sizes, work), save)
        if fmnist is not None:
            _run_section(report, "input_pipeline", lambda: input_pipeline_section(sizes, fmnist), save)
            _run_section(report, "export_gate", lambda: export_gate_section(sizes, fmnist["run"], work), save)
        _run_section(report, "cuda_tests", lambda: finish_cuda_tests(tests, tests_log, clock.left() + 60), save)
    print(render(report))
    return report


if __name__ == "__main__":
    main()
