"""DSCL and DSCL + PBSD (Xuan & Zhang, AAAI 2024): two stages on one :class:`LTClassifier`.

Stage ``"representation"`` (:class:`DSCLRepresentation`): the model's backbone plus a projection
head is the query encoder; a momentum copy of both encodes the key view; keys and labels go into a
FIFO queue. The loss is DSCL (``ltzoo.losses.dscl``) plus ``pbsd_weight`` times PBSD
(``ltzoo.losses.pbsd``) when ``pbsd_weight > 0``. Stage ``"classifier"``
(:class:`BalancedLinearClassifier`): a linear classifier on frozen pooled features with
class-balanced sampling. The projection head, key encoder and queue are attributes of the stage-1
objective, so they are checkpointed with it and never saved in ``model.safetensors``.

Method arguments (``recipe.method_args``), defaults from ``SY-Xuan/DSCL: main.py``:

- ``alpha`` (1/9, i.e. ``--contrastive_beta 8``): weight of the own view, or ``"scl"`` for the
  plain SCL weighting (the ablation baseline);
- ``temperature`` (0.07), ``momentum`` (0.999), ``queue_size`` (65536), ``proj_dim`` (128),
  ``proj_hidden`` (0 = the backbone width, as the official ``Linear(2048, 2048)``);
- ``pbsd_weight`` (0 = DSCL only; 1.5 official), ``num_patches`` (5), ``patch_size`` (0 = 64 at
  ImageNet scale, half the view side on small images);
- ``key_bn_splits`` (2): shuffled-BN chunks for the key encoder in a single process (the official
  code ran on 2 GPUs); under DDP the official cross-rank shuffle is used instead;
- ``classifier_augment`` ("official"): the stage-2 training augmentation, ``equal_lincls.py``'s
  RandomResizedCrop + photometrics, or ``"standard"``, the dataset's own (the ResNet-32 recipes; see
  :func:`~ltzoo.methods.dscl_views.classifier_view`);
- ``view_crop`` ("rrc") and ``view_scale_min`` (0 = the family's: 0.08 at ImageNet scale, 0.2 on small
  images): the query and key views' crop, the official RandomResizedCrop or the standard ``"padcrop"``
  (:func:`ltzoo.data.transforms.contrastive_crop`);
- ``probe_bn`` ("train"): the frozen backbone's BatchNorm during the stage-2 probe. ``"train"`` is the
  official ``equal_lincls.py``, which calls ``model.train()``: BN normalises with batch statistics and
  its running statistics follow the class-balanced stream. ``"frozen"`` keeps stage 1's running
  statistics (BN in eval mode); with PBSD those are about half 14-px patch statistics, because the
  patch crops pass the online encoder in train mode right after the query views. ``"reestimate"``
  re-estimates them once before stage 2, in a pass over the training set with the dataset's standard
  augmentation (cumulative average, no gradient), then keeps them frozen. Under DDP the estimate is
  rank 0's shard, broadcast.

Departures from the official code (each is also stated where it is implemented):

- the queue starts empty and only its filled part is used (official: random features and labels);
- a single process works (official: DDP only); shuffled BN is emulated with ``key_bn_splits``;
- the L patch crops of a batch go through the encoder in one forward (official: one per crop index,
  so BN statistics here are over all B*L patches);
- ROI alignment with ``aligned=True`` (official: the default ``aligned=False``, half a cell off);
- the teacher patch features are computed without gradient; the official code computes them with
  gradient and detaches the target, which gives the same gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ltzoo.data.transforms import train_transform
from ltzoo.engine.objective import (
    LoaderFactory,
    Objective,
    StageContext,
    StepOutput,
    declare_stage_only_args,
    register_method,
)
from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.dscl import DSCLLoss
from ltzoo.losses.pbsd import pbsd_loss, roi_patch_features
from ltzoo.methods.dscl_views import CLASSIFIER_AUGMENTS, DSCLPhotometric, DSCLViews, classifier_view
from ltzoo.models.batchnorm import reestimate_batchnorm
from ltzoo.models.classifier import LTClassifier
from ltzoo.models.momentum import LabelledQueue, MomentumEncoder
from ltzoo.models.projection import ProjectionHead
from ltzoo.recipe import CLASSIFIER_STAGE, REPRESENTATION_STAGE
from ltzoo.recipes.dscl import beta_to_alpha

DEFAULT_ARGS: dict[str, Any] = {
    "alpha": beta_to_alpha(8.0),
    "temperature": 0.07,
    "momentum": 0.999,
    "queue_size": 65536,
    "proj_dim": 128,
    "proj_hidden": 0,
    "pbsd_weight": 0.0,
    "num_patches": 5,
    "patch_size": 0,
    "key_bn_splits": 2,
    "classifier_augment": "official",
    "probe_bn": "train",
    "view_crop": "rrc",
    "view_scale_min": 0.0,
}
PROBE_BN_MODES = ("train", "frozen", "reestimate")


def resolve_args(method_args: dict[str, Any]) -> dict[str, Any]:
    """``DEFAULT_ARGS`` updated with ``method_args``; unknown names and a bad ``classifier_augment`` are
    refused by both stages, so a typo meant for stage 2 stops the run before stage 1, not after it."""
    unknown = set(method_args) - set(DEFAULT_ARGS)
    if unknown:
        raise BadHyperParameterError(f"unknown DSCL method_args {sorted(unknown)}; known: {sorted(DEFAULT_ARGS)}")
    args = {**DEFAULT_ARGS, **method_args}
    if args["classifier_augment"] not in CLASSIFIER_AUGMENTS:
        raise BadHyperParameterError(
            f"classifier_augment {args['classifier_augment']!r}: choose one of {list(CLASSIFIER_AUGMENTS)}"
        )
    if args["probe_bn"] not in PROBE_BN_MODES:
        raise BadHyperParameterError(f"probe_bn {args['probe_bn']!r}: choose one of {list(PROBE_BN_MODES)}")
    return args


class QueryEncoder(nn.Module):
    """Backbone -> average pool (the model's own ``forward_head``) -> projection head -> L2 norm.

    The momentum key encoder is a copy of this module. The online instance is built on the fly
    around the objective's model and projector and is not registered in the objective, so the
    objective's state dict never holds the inference model's weights.
    """

    def __init__(self, model: LTClassifier, projector: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.projector = projector

    def project(self, feature_map: torch.Tensor) -> torch.Tensor:
        pooled = self.model.forward_head(feature_map, pre_logits=True)
        # Normalised in fp32: under bf16 autocast the projector's output has about three significant digits.
        return F.normalize(self.projector(pooled).float(), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(self.model.forward_features(images))


class DSCLRepresentation(Objective):
    """Stage 1: DSCL (+ PBSD) with a momentum key encoder and a labelled feature queue."""

    def __init__(self, model: LTClassifier, ctx: StageContext) -> None:
        super().__init__(model, ctx)
        args = resolve_args(ctx.args)
        self.temperature = float(args["temperature"])
        self.contrastive = DSCLLoss(args["alpha"], self.temperature)  # checks alpha and tau now, not at step 1
        self.pbsd_weight = float(args["pbsd_weight"])
        if self.pbsd_weight < 0:
            raise BadHyperParameterError(f"pbsd_weight must be >= 0, got {self.pbsd_weight}")
        self.num_patches = int(args["num_patches"]) if self.pbsd_weight > 0 else 0
        if self.pbsd_weight > 0 and self.num_patches < 1:
            raise BadHyperParameterError("PBSD needs num_patches >= 1 (the official code uses 5)")
        self.patch_size = int(args["patch_size"])
        width = model.num_features
        self.projector = ProjectionHead(width, int(args["proj_hidden"]) or width, int(args["proj_dim"]))
        self.key_encoder = MomentumEncoder(
            self._online(), momentum=float(args["momentum"]), bn_splits=int(args["key_bn_splits"])
        )
        self.queue = LabelledQueue(int(args["queue_size"]), int(args["proj_dim"]))
        self._views = DSCLViews(
            ctx.data,
            num_patches=self.num_patches,
            patch_size=self.patch_size,
            view_scale=(float(args["view_scale_min"]), 1.0) if args["view_scale_min"] else None,
            view_crop=args["view_crop"],
        )
        self._photometric = DSCLPhotometric(ctx.data, self._views.patch_size)

    def _online(self) -> QueryEncoder:
        return QueryEncoder(self.model, self.projector)

    def train_transform(self) -> Callable[[Any], Any]:
        return self._views

    def training_step(self, batch: Any, epoch: int) -> StepOutput:
        crops, labels = batch
        views = self._photometric(crops)  # per-sample photometric augmentation, on the whole batch
        query_images, key_images = views[0], views[1]
        online = self._online()
        feature_map = self.model.forward_features(query_images)
        queries = online.project(feature_map)
        keys = self.key_encoder(key_images)
        queue_features, queue_labels = self.queue.contents()

        contrastive = self.contrastive(queries, keys, labels, queue_features, queue_labels)
        loss = contrastive
        logs = {"dscl": contrastive.item(), "queue_filled": float(self.queue.filled)}
        if self.pbsd_weight > 0:
            distill = self._pbsd(online, feature_map, views[2], views[3], keys, queue_features, query_images.shape[-1])
            loss = loss + self.pbsd_weight * distill
            logs["pbsd"] = distill.item()

        # As the official code: the queue used by this step's loss holds the previous steps' keys.
        self.queue.enqueue(keys, labels)
        return StepOutput(loss, logs)

    def _pbsd(
        self,
        online: QueryEncoder,
        feature_map: torch.Tensor,
        patches: torch.Tensor,
        boxes: torch.Tensor,
        keys: torch.Tensor,
        queue_features: torch.Tensor,
        view_size: int,
    ) -> torch.Tensor:
        batch, num_patches = patches.shape[:2]
        with torch.no_grad():  # the teacher is a detached target (the projector has no BN or dropout)
            teacher = online.projector(roi_patch_features(feature_map, boxes, view_size))
            teacher = F.normalize(teacher.float(), dim=-1)
        student = online(patches.flatten(0, 1)).view(batch, num_patches, -1)
        return pbsd_loss(teacher, student, keys, queue_features, self.temperature)

    def after_optimizer_step(self) -> None:
        # MoCo updates the key encoder at the start of the next forward; doing it right after the
        # optimizer step gives the key encoder the same weights at every forward.
        self.key_encoder.update(self._online())


class BalancedLinearClassifier(Objective):
    """Stage 2 (``equal_lincls.py``): a linear classifier on frozen pooled features.

    The recipe's stage says ``train="head"`` and ``sampler="class_balanced"``: the trainer freezes
    the backbone's weights. Its BatchNorm follows ``probe_bn`` (see the module docstring): the
    official train mode, stage 1's statistics frozen, or statistics re-estimated on the standard
    augmentation before the probe.
    """

    def __init__(self, model: LTClassifier, ctx: StageContext) -> None:
        super().__init__(model, ctx)
        if ctx.stage.train != "head" or ctx.stage.sampler != "class_balanced":
            raise BadHyperParameterError(
                f"the DSCL classifier stage must have train='head' and sampler='class_balanced', got "
                f"train={ctx.stage.train!r}, sampler={ctx.stage.sampler!r}"
            )
        args = resolve_args(ctx.args)
        self.augment = args["classifier_augment"]
        self.probe_bn = args["probe_bn"]
        self._bn_batches: Any = None

    def train_transform(self) -> Callable[[Any], Any]:
        return classifier_view(self.ctx.data, self.augment)

    def train_loader(self, make_loader: LoaderFactory) -> Any:
        if self.probe_bn == "reestimate":
            # One pass over the training set as CE sees it (instance sampling, standard augmentation).
            self._bn_batches = make_loader("instance", train_transform(self.ctx.data))
        return super().train_loader(make_loader)

    def set_train_mode(self) -> None:
        super().set_train_mode()
        if self.probe_bn == "train":
            self.model.backbone.train()  # the official equal_lincls.py: weights frozen, BN in train mode

    def on_epoch_start(self, epoch: int) -> None:
        if epoch == 0 and self.probe_bn == "reestimate":
            # Before the first epoch only: a run resumed inside this stage keeps the statistics it saved.
            images = (batch[0].to(self.ctx.device) for batch in self._bn_batches)
            reestimate_batchnorm(self.model.backbone, images, self.model.forward_features)
        if epoch == 0:
            # Official init of the new fc: N(0, 0.01), bias 0. Only at the stage's first epoch, so that
            # a run resumed in the middle of this stage keeps the head it had learned.
            head = self.model.head
            nn.init.normal_(head.weight, mean=0.0, std=0.01)
            if getattr(head, "bias", None) is not None:
                nn.init.zeros_(head.bias)

    def training_step(self, batch: Any, epoch: int) -> StepOutput:
        images, labels = batch
        with torch.no_grad():  # the backbone is frozen: no graph through it
            pooled = self.model.forward_head(self.model.forward_features(images), pre_logits=True)
        logits = self.model.head(pooled)
        return StepOutput(F.cross_entropy(logits, labels))


def dscl_objective(model: LTClassifier, ctx: StageContext) -> Objective:
    """Pick the stage's objective by name (``representation`` or ``classifier``)."""
    if ctx.stage.name == REPRESENTATION_STAGE:
        return DSCLRepresentation(model, ctx)
    if ctx.stage.name == CLASSIFIER_STAGE:
        return BalancedLinearClassifier(model, ctx)
    raise BadHyperParameterError(
        f"DSCL has stages {REPRESENTATION_STAGE!r} and {CLASSIFIER_STAGE!r}, not {ctx.stage.name!r}"
    )


register_method("dscl")(dscl_objective)
register_method("dscl_pbsd")(dscl_objective)
for _method in ("dscl", "dscl_pbsd"):
    declare_stage_only_args(_method, CLASSIFIER_STAGE, {"classifier_augment", "probe_bn"})
