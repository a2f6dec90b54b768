"""Mixed precision, channels_last and --compile: what runs in which dtype, and that results do not change."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from ltzoo.data import LTDataset, TensorImageDataset
from ltzoo.engine.compiled import compile_backbone, compile_errors
from ltzoo.engine.evaluator import TorchPredictor
from ltzoo.engine.objective import Objective, StageContext
from ltzoo.engine.trainer import _TrainingStep
from ltzoo.errors import BadHyperParameterError, LtzooError
from ltzoo.losses.dscl import dscl_loss
from ltzoo.losses.iccl import centroid_contrastive_loss, interpolated_cross_entropy
from ltzoo.losses.ldam import LDAMLoss
from ltzoo.losses.pbsd import pbsd_loss
from ltzoo.losses.supcon import supcon_loss
from ltzoo.losses.weight_balancing import cb_softmax_bce_loss, feature_regularization
from ltzoo.models import LTClassifier, build_model
from ltzoo.models.heads import build_head
from ltzoo.models.resnet_cifar import ResNetCifar
from ltzoo.precision import cpu_bf16_features, resolve_precision
from ltzoo.recipe import Recipe, StageConfig
from ltzoo.registry import get_entry

BF16_CPU = bool(cpu_bf16_features())


def _ce_step(precision: str, fmnist) -> tuple[_TrainingStep, tuple[torch.Tensor, torch.Tensor]]:
    recipe = get_entry("ce_resnet32.fmnist_lt").recipe()
    model = build_model("resnet32", 10, in_chans=1)
    ctx = StageContext(recipe=recipe, stage=recipe.stages[0], stage_index=0, data=fmnist.info, steps_per_epoch=1)
    step = _TrainingStep(model, Objective(model, ctx), precision, torch.device("cpu"))
    torch.manual_seed(0)
    return step, (torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))


def _dtypes_inside_forward(step: _TrainingStep, batch) -> tuple[torch.dtype, torch.Tensor]:
    seen: list[torch.dtype] = []
    conv = next(m for m in step.model.modules() if isinstance(m, nn.Conv2d))
    handle = conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    loss, _ = step(batch, 0)
    handle.remove()
    return seen[0], loss


def test_bf16_autocast_is_on_inside_the_forward_and_the_loss_is_fp32(fmnist):
    conv_dtype, loss = _dtypes_inside_forward(*_ce_step("bf16", fmnist))
    assert conv_dtype == torch.bfloat16
    assert loss.dtype == torch.float32


def test_fp32_runs_the_forward_in_fp32(fmnist):
    conv_dtype, loss = _dtypes_inside_forward(*_ce_step(resolve_precision("fp32", "cpu"), fmnist))
    assert conv_dtype == torch.float32 and loss.dtype == torch.float32


@pytest.mark.skipif(not BF16_CPU, reason="this CPU has neither AMX nor AVX512_BF16: auto resolves to fp32 here")
def test_auto_is_bf16_on_a_cpu_with_native_bf16(fmnist):
    precision = resolve_precision("auto", "cpu")
    assert precision == "bf16"
    conv_dtype, _ = _dtypes_inside_forward(*_ce_step(precision, fmnist))
    assert conv_dtype == torch.bfloat16


@pytest.mark.skipif(BF16_CPU, reason="this CPU has native bf16: auto resolves to bf16 here")
def test_auto_is_fp32_on_a_cpu_without_native_bf16():
    assert resolve_precision("auto", "cpu") == "fp32"


def test_bad_precision_and_fp16_on_the_cpu_are_clear_errors(tmp_path):
    with pytest.raises(BadHyperParameterError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(BadHyperParameterError, match="precision 'fp8' is not one of"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(BadHyperParameterError, match="precision 'half' is not one of"):
        get_entry("ce_resnet32.fmnist_lt").recipe().replace(precision="half")
    cli = [sys.executable, "-m", "ltzoo", "train", "ce_resnet32.fmnist_lt", "--out", str(tmp_path / "r")]
    fp16 = subprocess.run([*cli, "--precision", "fp16"], capture_output=True, text=True)
    assert fp16.returncode == 2 and "fp16 needs a CUDA device" in fp16.stderr and "bf16 or fp32" in fp16.stderr
    bad = subprocess.run([*cli, "--precision", "fp8"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'fp8'" in bad.stderr
    assert not (tmp_path / "r").exists()


def _loss_cases():
    """Each loss on fixed inputs (drawn once, so that every call sees the same tensors)."""
    generator = torch.Generator().manual_seed(0)
    randn = lambda *shape: torch.randn(*shape, generator=generator)  # noqa: E731
    unit = lambda *shape: nn.functional.normalize(randn(*shape), dim=-1)  # noqa: E731
    labels = torch.randint(0, 5, (16,), generator=generator)
    queue_labels = torch.randint(0, 5, (40,), generator=generator)
    logits, lam, class_weights = (
        randn(16, 5) * 3,
        torch.rand(16, generator=generator),
        torch.rand(5, generator=generator),
    )
    q, k, queue, feats, centroids = unit(16, 32), unit(16, 32), unit(40, 32), randn(16, 32), randn(5, 32)
    teacher, student = unit(16, 5, 32), unit(16, 5, 32)
    return {
        # At tau = 0.07 a bf16 cosine (about 3 significant digits) moves a logit by about 0.05.
        "dscl": lambda: dscl_loss(q, k, labels, queue, queue_labels, 1 / 9, 0.07),
        "pbsd": lambda: pbsd_loss(teacher, student, k, queue, 0.07),
        "supcon": lambda: supcon_loss(feats, labels, 0.07),
        "iccl": lambda: centroid_contrastive_loss(feats, centroids, labels, labels.roll(1), lam, 0.1),
        "interpolated_ce": lambda: interpolated_cross_entropy(logits, labels, labels.roll(1), lam),
        "ldam": lambda: LDAMLoss([100, 50, 20, 10, 5])(torch.tanh(logits), labels),
        "cb_bce": lambda: cb_softmax_bce_loss(logits, labels, class_weights + 0.5),
        "feature_regularization": lambda: feature_regularization(feats),
    }


@pytest.mark.parametrize("name", sorted(_loss_cases()))
def test_losses_run_in_fp32_inside_a_bf16_autocast_region(name):
    case = _loss_cases()[name]
    reference = case()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = case()
    assert under_autocast.dtype == torch.float32
    assert torch.equal(under_autocast, reference), f"{name}: {under_autocast.item()} vs fp32 {reference.item()}"


def test_losses_upcast_half_precision_inputs():
    torch.manual_seed(0)
    queries = nn.functional.normalize(torch.randn(8, 16), dim=1)
    labels = torch.randint(0, 3, (8,))
    empty = torch.zeros(0, 16)
    reference = dscl_loss(
        queries.bfloat16().float(),
        queries.bfloat16().float(),
        labels,
        empty,
        torch.zeros(0, dtype=torch.long),
        1 / 9,
        0.07,
    )
    upcast = dscl_loss(
        queries.bfloat16(), queries.bfloat16(), labels, empty.bfloat16(), torch.zeros(0, dtype=torch.long), 1 / 9, 0.07
    )
    assert upcast.dtype == torch.float32 and torch.equal(upcast, reference)


def test_channels_last_gives_the_eager_logits():
    torch.manual_seed(0)
    model = build_model("resnet32", 10, in_chans=1).eval()
    images = torch.randn(16, 1, 28, 28).numpy()
    contiguous = TorchPredictor(model, channels_last=False)(images)
    nhwc = TorchPredictor(model, channels_last=True)(images)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # the predictor converted the model
    np.testing.assert_allclose(nhwc, contiguous, rtol=1e-5, atol=1e-5)  # untrained logits are in the hundreds


def _tiny_classifier() -> LTClassifier:
    backbone = ResNetCifar((1, 1, 1), in_chans=1)
    return LTClassifier(backbone, build_head({"type": "linear"}, 64, 10), 64, 10)


@pytest.mark.slow
def test_compiled_backbone_gives_the_eager_logits_and_the_same_state_dict():
    torch.manual_seed(0)
    eager = _tiny_classifier().eval()
    compiled = _tiny_classifier().eval()
    compiled.load_state_dict(eager.state_dict())
    targets = compile_backbone(compiled)
    assert len(targets) == 4  # the stem and three stages
    images = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert (eager(images) - compiled(images)).abs().max() < 1e-4
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no _orig_mod. prefix in saved runs


def test_a_compile_failure_is_a_clear_error():
    def failing_backend(graph_module, example_inputs):
        raise RuntimeError("no code generator for this machine")

    module = torch.compile(nn.Linear(4, 2), backend=failing_backend)
    with pytest.raises(LtzooError, match="torch.compile failed at the first training step.*rerun without --compile"):
        with compile_errors(enabled=True):
            module(torch.randn(3, 4))


# ----- model selection over stages (issue: the saved model is the selected one) ----------------------------------
class _ScriptedVal:
    """Val top-1 by call order; remembers the weights each call scored."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = list(scores)
        self.weights: list[dict[str, torch.Tensor]] = []

    def __call__(self, model: nn.Module) -> dict[str, float]:
        self.weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        score = self.scores[len(self.weights) - 1]
        return {"all": score, "many": score, "medium": score, "few": score}


def _small(dataset: TensorImageDataset, count: int) -> TensorImageDataset:
    return TensorImageDataset(dataset.images[:count], dataset.targets[:count])


def test_selection_restarts_in_every_selecting_stage(fmnist, tmp_path):
    from safetensors.torch import load_file

    from ltzoo.engine.trainer import Trainer

    data = LTDataset(
        fmnist.name,
        fmnist.train,
        _small(fmnist.val, 50),
        _small(fmnist.test, 50),
        fmnist.label_names,
        fmnist.info,
        fmnist.index_sha256,
    )
    recipe = Recipe(
        method="ce",
        arch="resnet32",
        dataset="fmnist_lt",
        stages=[
            StageConfig(name="first", epochs=2, batch_size=32, lr=0.05, select_on_val=True),
            StageConfig(name="second", epochs=3, batch_size=32, lr=0.01, select_on_val=True),
        ],
    )
    # Stage 1's best (95) beats every stage-2 epoch; the saved model must still be stage 2's best (epoch 2).
    scripted = _ScriptedVal([80.0, 95.0, 40.0, 70.0, 60.0])
    trainer = Trainer(recipe, tmp_path / "run", data=data, steps_per_epoch=2)
    trainer._evaluate_val = scripted
    metrics = trainer.run()
    assert metrics["selected"] == {"stage": "second", "epoch": 2, "val_all": 70.0}
    saved = load_file(tmp_path / "run" / "model.safetensors")
    stage2_best = scripted.weights[3]
    assert all(torch.equal(saved[k], stage2_best[k]) for k in saved)
    assert not all(torch.equal(saved[k], scripted.weights[4][k]) for k in saved)  # not the last epoch
