"""Data-parallel training with torchrun: 2 gloo processes on 127.0.0.1, on the CPU.

Which equivalence is tested: BatchNorm in train mode normalises each process's own micro-batch
(SyncBatchNorm runs only on GPUs), so a 2-process step over a global batch of B images is *exactly*
one process that takes the same B images as the same two micro-batches of B/2, runs the training
step on each, and averages the gradients. That is what the reference below computes, by hand, from
the batches each process recorded (``tests/ddp_probe.py`` wraps the real ``ltzoo train`` command).
That the two micro-batches together are the one-process global batch is checked on the samplers.
For DSCL the reference also has to reproduce MoCo's shuffled BN across processes: the key encoder
encodes the gathered key views in two chunks of a permutation drawn on process 0.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from ports import torchrun_command

from ltzoo.data.samplers import SAMPLER_KINDS, LongTailSampler
from ltzoo.engine.evaluator import TorchPredictor, evaluate_split
from ltzoo.engine.objective import StageContext, get_method
from ltzoo.models import build_model
from ltzoo.registry import get_entry
from ltzoo.runs import load_run

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")]

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "tests" / "ddp_probe.py"
WORLD = 2
RUN_TIMEOUT_S = 420  # a 2-process smoke run takes ~20 s on 2 idle cores; generous for a loaded CI box
CE = "ce_resnet32.fmnist_lt"
DSCL = "dscl_pbsd_resnet32.fmnist_lt"
# The reference step below runs in fp32 and the default (contiguous) layout, so the processes must too.
# Under --precision auto a CPU with native bf16 trains in bf16, whose rounding differs between one batch of
# B and two micro-batches of B/2; and channels_last runs other oneDNN kernels, whose fp32 summation order
# differs (train-mode BN at initialisation amplifies that noise to ~1 % of the stem gradient's scale).
# Either would make the comparison measure kernels, not data parallelism.
EXACT = ["--precision", "fp32", "--channels-last", "off"]
CE_ARGS = ["--epochs", "3", "--steps-per-epoch", "1", *EXACT]  # one step per epoch: line 1 is step 1
DSCL_ARGS = ["--epochs", "2", "--steps-per-epoch", "1", *EXACT]  # representation 2 epochs, classifier 1


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def _start(cmd: list[str], **kwargs) -> subprocess.Popen:
    # Own session: on a timeout or failure the whole job (torchrun and its workers) is killed together.
    return subprocess.Popen(cmd, cwd=REPO, start_new_session=True, **kwargs)


def _kill_job(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    started = time.time()
    proc = _start(cmd, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        _kill_job(proc)
    print(f"{' '.join(cmd[3:])}: {time.time() - started:.1f} s")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _probe_run(tmp_path_factory, name: str, args: list[str], **env: str) -> dict:
    root = tmp_path_factory.mktemp(name.split(".")[0])
    out, records = root / "run", root / "records"
    done = _run(torchrun_command(WORLD, str(PROBE), str(records), name, "--out", str(out), *args), **env)
    return {
        "done": done,
        "out": out,
        "records": [torch.load(records / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
        if done.returncode == 0
        else None,
    }


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def ce_ddp(tmp_path_factory):
    run = _probe_run(tmp_path_factory, CE, CE_ARGS)
    assert run["done"].returncode == 0, run["done"].stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def dscl_ddp(tmp_path_factory):
    run = _probe_run(tmp_path_factory, DSCL, DSCL_ARGS)
    assert run["done"].returncode == 0, run["done"].stderr[-3000:]
    return run


# ----- the single-process reference ---------------------------------------------------------------
def _build(name: str, data, step1: dict):
    """The model and first-stage objective in the state the distributed step started from."""
    recipe = get_entry(name).recipe()
    model = build_model(recipe.arch, data.num_classes, in_chans=data.info.in_chans, head=recipe.head)
    model.load_state_dict(step1["model"])
    ctx = StageContext(recipe=recipe, stage=recipe.stages[0], stage_index=0, data=data.info, steps_per_epoch=1)
    objective = get_method(recipe.method)(model, ctx)
    objective.load_state_dict(step1["objective"])
    model.train()
    objective.train()
    return model, objective


def _grads(model, objective) -> dict[str, torch.Tensor]:
    named = [("model." + k, p) for k, p in model.named_parameters()]
    named += [("objective." + k, p) for k, p in objective.named_parameters()]
    return {k: p.grad.clone() for k, p in named if p.grad is not None}


def _micro_batch_step(name: str, data, step1: dict, batch, keys: torch.Tensor | None = None):
    """One process's share, recomputed here: (its loss, its gradients)."""
    model, objective = _build(name, data, step1)
    if keys is not None:  # the keys that the cross-process shuffled BN gives this micro-batch
        objective.key_encoder.forward = lambda images: keys
    torch.set_rng_state(step1["rng"])  # the step's own random draws (DSCL augments its views in the step)
    out = objective.training_step(batch, 0)
    out.loss.backward()
    return out.loss.item(), _grads(model, objective)


@torch.no_grad()
def _shuffled_bn_keys(name: str, data, records: list[dict]) -> list[torch.Tensor]:
    """MoCo's shuffled BN over 2 processes, by hand: each process augments its views in the step (its
    first RNG draws), then process 0 draws a permutation of the gathered key views (its next draw);
    process r encodes the r-th half of the permuted batch with batch statistics of that half; every
    image gets back its own key."""
    _, objective = _build(name, data, records[0]["step1"])
    augmented = {}
    for rank in reversed(range(WORLD)):  # rank 0 last: its RNG then stands where its permutation is drawn
        torch.set_rng_state(records[rank]["step1"]["rng"])
        augmented[rank] = objective._photometric(records[rank]["step1"]["batch"][0])[1]
    key_views = torch.cat([augmented[rank] for rank in range(WORLD)])
    permutation = torch.randperm(key_views.shape[0])
    encoder = objective.key_encoder.encoder
    encoded = torch.cat([encoder(key_views[part]) for part in permutation.view(WORLD, -1)])
    keys = torch.empty_like(encoded)
    keys[permutation] = encoded
    return list(keys.chunk(WORLD))


def _assert_matches_micro_batched_reference(name: str, data, run: dict, keys: list | None = None) -> None:
    records = run["records"]
    steps = [
        _micro_batch_step(name, data, rec["step1"], rec["step1"]["batch"], None if keys is None else keys[r])
        for r, rec in enumerate(records)
    ]
    losses = [loss for loss, _ in steps]
    # Each process's own loss, and the logged loss of the first epoch (one step): the mean over processes.
    for rec, loss in zip(records, losses):
        assert rec["step1"]["loss"] == pytest.approx(loss, rel=1e-5, abs=1e-6)
    assert _log(run["out"])[0]["loss"] == pytest.approx(sum(losses) / WORLD, rel=1e-5)
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)  # the processes really saw different data
    expected = {k: sum(g[k] for _, g in steps) / WORLD for k in steps[0][1]}
    first_only = steps[0][1]
    for rec in records:
        grads = rec["step1"]["grads"]
        assert grads.keys() == expected.keys()
        for k, g in expected.items():
            # float32 noise of the same sums in another order / thread count: relative to the tensor's scale
            atol = 1e-4 * float(g.abs().max()) + 1e-8
            torch.testing.assert_close(grads[k], g, rtol=1e-4, atol=atol, msg=lambda m, k=k: f"{k}: {m}")
    # The tolerance can fail: one micro-batch's gradient alone is far from the average.
    diff = max(float((records[0]["step1"]["grads"][k] - first_only[k]).abs().max()) for k in expected)
    assert diff > 1e-3
    # After the last step the processes still hold identical trainable parameters, and at the end of
    # an epoch (val, checkpoint) the whole model, BN running statistics included, is the same.
    for key in ("last", "epoch_end"):
        state0, state1 = records[0][key], records[1][key]
        assert state0.keys() == state1.keys()
        assert [k for k in state0 if not torch.equal(state0[k], state1[k])] == [], key


# ----- tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", SAMPLER_KINDS)
def test_rank_shards_of_a_step_make_up_the_one_process_global_batch(fmnist, kind):
    targets, batch = fmnist.train.targets, 64
    one = list(LongTailSampler(kind, targets, fmnist.num_classes, seed=7))[:batch]
    shards = [
        list(LongTailSampler(kind, targets, fmnist.num_classes, seed=7, rank=r, world_size=WORLD))[: batch // WORLD]
        for r in range(WORLD)
    ]
    assert sorted(shards[0] + shards[1]) == sorted(one)
    assert shards[0] == one[0::2] and shards[1] == one[1::2]  # rank r takes every WORLD-th draw


def test_ce_two_processes_equal_one_process_over_the_same_micro_batches(ce_ddp, fmnist):
    records = ce_ddp["records"]
    for rec in records:
        images, labels = rec["step1"]["batch"]
        assert images.shape[0] == labels.shape[0] == 32  # the recipe's global batch of 64, halved
    _assert_matches_micro_batched_reference(CE, fmnist, ce_ddp)
    # One line per epoch, written once (rank 0), and the run's metrics from the sharded evaluation
    # equal a one-process evaluation of the saved model.
    assert [line["epoch"] for line in _log(ce_ddp["out"])] == [1, 2, 3]
    assert ce_ddp["done"].stdout.count("saved to") == 1
    metrics = json.loads((ce_ddp["out"] / "metrics.json").read_text())
    model, _ = load_run(ce_ddp["out"])
    single = evaluate_split(TorchPredictor(model), fmnist, "val")
    assert metrics["val"]["per_class"] == single["per_class"] and metrics["val"]["num_samples"] == 1000
    # The val score that selected the epoch was computed (sharded) on the model that was saved.
    assert metrics["selected"]["val_all"] == single["all"]


def test_dscl_pbsd_two_processes_equal_one_process_over_the_same_micro_batches(dscl_ddp, fmnist):
    records = dscl_ddp["records"]
    keys = _shuffled_bn_keys(DSCL, fmnist, records)
    _assert_matches_micro_batched_reference(DSCL, fmnist, dscl_ddp, keys)
    # The queue gathered the keys of both processes, in rank order, and is the same on both.
    labels = torch.cat([rec["step1"]["batch"][1] for rec in records])
    for rec in records:
        queue = rec["step2"]["objective"]
        assert int(queue["queue.filled"]) == 64
        torch.testing.assert_close(queue["queue.features"][:64], torch.cat(keys), rtol=1e-4, atol=1e-5)
        assert torch.equal(queue["queue.labels"][:64], labels)
    log = _log(dscl_ddp["out"])
    assert [(line["stage"], line["epoch"]) for line in log] == [
        ("representation", 1),
        ("representation", 2),
        ("classifier", 1),
    ]
    assert log[1]["queue_filled"] == 64 + 0.0  # the one step of epoch 2 saw the 64 keys of step 1


def test_nan_on_one_process_stops_every_process_at_the_same_step(tmp_path_factory):
    run = _probe_run(tmp_path_factory, CE, ["--epochs", "2", "--steps-per-epoch", "1"], LTZOO_PROBE_NAN="1:1")
    done = run["done"]
    assert done.returncode != 0
    message = "loss became nan (mean over 2 processes) in stage 'main', epoch 2, step 1"
    assert done.stderr.count(message) == WORLD, done.stderr[-3000:]  # both processes, same step
    state = torch.load(run["out"] / "checkpoints" / "last.pt", weights_only=True)
    assert state["epochs_done"] == 1 and state["world_size"] == WORLD and len(state["rng_per_rank"]) == WORLD
    assert not (run["out"] / "model.safetensors").exists()


def _child_with_rank(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker process with RANK=rank (workers are its direct children)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and f"RANK={rank}".encode() in (stat.parent / "environ").read_bytes().split(b"\0"):
                return int(stat.parent.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker process through /proc")
def test_killed_process_fails_the_job_cleanly_and_the_job_resumes(ce_ddp, tmp_path):
    out = tmp_path / "killed"
    train = ["-m", "ltzoo", "train", CE, "--out", str(out), *CE_ARGS]
    with open(tmp_path / "torchrun.log", "w") as log_file:
        proc = _start(torchrun_command(WORLD, *train), env=_env(), stdout=log_file, stderr=subprocess.STDOUT)
        try:
            log, deadline = out / "train_log.jsonl", time.time() + RUN_TIMEOUT_S
            while not (log.is_file() and log.read_text().count("\n") >= 1) and time.time() < deadline:
                time.sleep(0.05)
            victim = _child_with_rank(proc.pid, 1)
            assert victim is not None and proc.poll() is None, "the run ended before it could be killed"
            os.kill(victim, signal.SIGKILL)  # process 1 dies in epoch 2
            killed_at = time.time()
            code = proc.wait(timeout=120)  # no hang: torchrun stops process 0 and exits
        finally:
            _kill_job(proc)
    output = (tmp_path / "torchrun.log").read_text()
    print(f"torchrun exited {code} {time.time() - killed_at:.1f} s after the kill")
    assert code != 0
    assert "SIGKILL" in output or "Signal 9" in output, output[-3000:]
    assert not (out / "model.safetensors").exists()
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert 1 <= state["epochs_done"] < 3

    resumed = _run(torchrun_command(WORLD, *train, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # The resumed job ends exactly where the uninterrupted one (ce_ddp, same command) ended.
    reference = json.loads((ce_ddp["out"] / "metrics.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["per_class"] == reference["test"]["per_class"]
    strip = lambda lines: [{k: v for k, v in line.items() if k != "images_per_s"} for line in lines]  # noqa: E731
    assert strip(_log(out)) == strip(_log(ce_ddp["out"]))
    assert math.isfinite(metrics["val"]["all"])
