"""SCL: supervised contrastive representation, then a class-balanced classifier (two stages).

Stage ``"representation"`` (:class:`SupConRepresentation`) follows HobbitLong/SupContrast
``main_supcon.py``: two augmented views per image (``TwoCropTransform`` of the SupContrast
augmentation, :func:`supcon_augmentation`), the pooled backbone feature goes through an MLP
projection head (:class:`~ltzoo.models.projection.ProjectionHead`, training only, never saved in the
model) and the SupCon loss (:func:`~ltzoo.losses.supcon.supcon_loss`). The classifier head of the
model is not touched in this stage.

Stage ``"classifier"`` (:class:`BalancedClassifier`) follows ``main_linear.py`` in its loss: plain CE
on frozen features. Its augmentation departs: ``main_linear.py`` reuses ``main_ce.set_loader``, whose
CIFAR training transform is ``RandomResizedCrop(32, scale=(0.2, 1))`` + flip; ltzoo trains the
classifier on the dataset's standard augmentation (:func:`ltzoo.data.transforms.train_transform`:
pad-and-crop + flip for CIFAR-LT and fmnist_lt, RandomResizedCrop + flip for the ImageNet family).
Why: on 28-32 px images a probe fitted to crops down to 0.2 of the image sees objects it never meets
at evaluation. The one measurement is DSCL's (:func:`ltzoo.methods.dscl_views.classifier_view`): on
fmnist_lt, stage 2 on a fixed DSCL + PBSD backbone reached about 68 % val top-1 with the official
RandomResizedCrop views and about 73 % with the standard ones, which is why DSCL's fmnist_lt recipe
uses ``classifier_augment="standard"``; the SCL probe has not been run both ways. It is also the
augmentation of ICCL's and WB's classifier stages, so the second stages compare representations
rather than augmentations. The recipe's stage says ``train="head"``
(the trainer freezes the backbone and keeps BatchNorm in eval mode) and
``sampler="class_balanced"``, which is the long-tail part of "SCL": the official linear stage
samples instances; class-balanced sampling is the decoupled (cRT-style) re-balancing of long-tailed
SCL baselines (ltzoo's choice).

``method_args`` (defaults in :data:`SCL_ARGS`): ``temperature`` (0.1, the README's CIFAR value),
``base_temperature`` (0.07, the loss default; the loss is scaled by tau / base_tau as upstream),
``proj_hidden`` (``None``: the backbone width, as ``SupConResNet``'s ``mlp`` head) and ``proj_dim``
(128), ``view_crop`` / ``view_scale_min`` (the views' crop: ``"rrc"`` with SupContrast's 0.2, or the
standard ``"padcrop"``; :func:`ltzoo.data.transforms.contrastive_crop`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchvision.transforms import v2

from ltzoo.data.spec import DataInfo
from ltzoo.data.transforms import MultiView, contrastive_crop
from ltzoo.engine.objective import Objective, StageContext, StepOutput, register_method, resolve_method_args
from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.supcon import supcon_loss
from ltzoo.models.projection import ProjectionHead
from ltzoo.recipe import CLASSIFIER_STAGE, REPRESENTATION_STAGE

SCL_ARGS: dict[str, Any] = {
    "temperature": 0.1,
    "base_temperature": 0.07,
    "proj_hidden": None,
    "proj_dim": 128,
    "view_crop": "rrc",  # the views' geometric crop: SupContrast's RandomResizedCrop, or "padcrop"
    "view_scale_min": 0.2,  # RandomResizedCrop's smallest area fraction (SupContrast: 0.2)
}


def supcon_augmentation(info: DataInfo, crop: str = "rrc", scale_min: float = 0.2) -> Callable[[Any], torch.Tensor]:
    """SupContrast's ``main_supcon.py`` augmentation: RandomResizedCrop(scale 0.2-1), flip,
    ColorJitter(0.4, 0.4, 0.4, 0.1) with p=0.8, RandomGrayscale(p=0.2).

    Single-channel data (fmnist_lt) gets brightness/contrast jitter only and no grayscale step,
    since saturation and hue do not exist there (ltzoo's adaptation). ``crop``/``scale_min`` choose
    the geometric crop (:func:`ltzoo.data.transforms.contrastive_crop`; SupContrast's by default).
    """
    if info.in_chans == 1:
        photometric: list[Callable[[Any], Any]] = [v2.RandomApply([v2.ColorJitter(0.4, 0.4)], p=0.8)]
    else:
        photometric = [v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2)]
    channels = [v2.Grayscale(num_output_channels=1)] if info.in_chans == 1 else []
    return v2.Compose(
        [
            v2.ToImage(),
            contrastive_crop(info, crop, scale_min),
            v2.RandomHorizontalFlip(),
            *photometric,
            *channels,
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(info.mean), list(info.std)),
        ]
    )


def build_projection(model: nn.Module, args: dict[str, Any]) -> ProjectionHead:
    width = int(model.num_features)
    return ProjectionHead(width, args["proj_hidden"] or width, args["proj_dim"])


def check_temperatures(args: dict[str, Any]) -> None:
    for key in ("temperature", "base_temperature"):
        if not args[key] > 0:
            raise BadHyperParameterError(
                f"SCL {key} must be > 0, got {args[key]}; SupContrast uses 0.1 for CIFAR (0.07 by default)"
            )


class SupConRepresentation(Objective):
    """Stage 1: SupCon on two SupContrast-augmented views through a projection head."""

    def __init__(self, model: nn.Module, ctx: StageContext) -> None:
        super().__init__(model, ctx)
        self.hparams = resolve_method_args(ctx, SCL_ARGS)
        check_temperatures(self.hparams)
        self.projection = build_projection(model, self.hparams)

    def train_transform(self) -> Callable[[Any], Any]:
        augment = supcon_augmentation(self.ctx.data, self.hparams["view_crop"], float(self.hparams["view_scale_min"]))
        return MultiView(augment, augment)

    def training_step(self, batch: Any, epoch: int) -> StepOutput:
        (view1, view2), targets = batch
        pooled = self.model.forward_head(self.model.forward_features(torch.cat([view1, view2])), pre_logits=True)
        loss = supcon_loss(
            self.projection(pooled), targets.repeat(2), self.hparams["temperature"], self.hparams["base_temperature"]
        )
        return StepOutput(loss)


class BalancedClassifier(Objective):
    """Stage 2: CE on frozen features (the stage's ``train="head"`` and class-balanced sampler)."""

    def __init__(self, model: nn.Module, ctx: StageContext) -> None:
        super().__init__(model, ctx)
        if ctx.stage.train != "head":
            raise BadHyperParameterError(
                f"SCL's {CLASSIFIER_STAGE!r} stage trains the classifier on frozen features: set train='head' "
                f"(got {ctx.stage.train!r})"
            )


@register_method("scl")
def scl_method(model: nn.Module, ctx: StageContext) -> Objective:
    stages = {REPRESENTATION_STAGE: SupConRepresentation, CLASSIFIER_STAGE: BalancedClassifier}
    if ctx.stage.name not in stages:
        raise BadHyperParameterError(
            f"SCL stages are named {sorted(stages)}; the recipe has a stage {ctx.stage.name!r}"
        )
    return stages[ctx.stage.name](model, ctx)
