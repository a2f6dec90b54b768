"""LIFT: lightweight fine-tuning of a pretrained backbone for the long tail (Shi et al., ICML 2024, arXiv 2309.10019).

As shijxcs/LIFT (``configs/model/in21k_vit_b16_peft.yaml``, ``models/classifiers.py``): a cosine classifier
(``CosineClassifier``, scale 30) initialised with the class means of the pretrained features
(``init_head: class_mean``), trained with the logit-adjusted loss (``loss_type: LA``: cross-entropy on
``logits + log(training prior)``, Menon et al. 2021) while only a small part of the backbone trains.

ltzoo departs from the official code where it names no equivalent:
- the small trainable part is the backbone's last stage or block (``train="last:1"``; ``--trainable`` changes
  it), not AdaptFormer adapters beside frozen blocks (ltzoo adds no modules to a timm backbone, so that every
  run stays a plain timm model plus a head);
- no CLIP text initialisation of the classifier (no CLIP checkpoint here: the class-mean init is the official
  code's choice for a non-CLIP backbone such as IN21K ViT-B/16) and no test-time ensemble of crops.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ltzoo.engine.objective import Objective, StageContext, StepOutput, register_method, resolve_method_args
from ltzoo.errors import BadHyperParameterError
from ltzoo.recipes.lift import DEFAULT_ARGS


class LIFTObjective(Objective):
    """Logit-adjusted cross-entropy on a cosine head, the head initialised with the class means of the features."""

    def __init__(self, model: nn.Module, ctx: StageContext) -> None:
        super().__init__(model, ctx)
        self.hparams = resolve_method_args(ctx, DEFAULT_ARGS)
        if type(model.head).__name__ != "CosineHead":
            raise BadHyperParameterError(
                f"LIFT trains a cosine classifier: set the recipe's head to {{'type': 'cosine', 'scale': 30}} "
                f"(got {ctx.recipe.head})"
            )
        if self.hparams["init_head"] not in ("class_mean", "random"):
            raise BadHyperParameterError(
                f"LIFT init_head must be class_mean or random, got {self.hparams['init_head']}"
            )
        counts = torch.tensor([float(n) for n in ctx.data.class_counts])
        self.register_buffer("log_prior", torch.log(counts / counts.sum()))
        self._loader: Any = None

    def train_loader(self, make_loader: Any) -> Any:
        self._loader = super().train_loader(make_loader)
        return self._loader

    def on_epoch_start(self, epoch: int) -> None:
        # At the stage's first epoch only: a run resumed later keeps its trained head (one resumed within the
        # first epoch restarts it from the stage's start, where the init belongs).
        if epoch == 0 and self.hparams["init_head"] == "class_mean":
            self._class_mean_init(self._loader)

    @torch.no_grad()
    def _class_mean_init(self, loader: DataLoader) -> None:
        """The head's rows = each class's mean pooled feature over one pass of the training loader (the official
        code's class_mean init; the features of augmented images, one epoch's worth)."""
        model = self.model
        was_training = model.training
        model.eval()
        sums = torch.zeros(model.num_classes, model.num_features)
        counts = torch.zeros(model.num_classes)
        for step, (images, targets) in enumerate(loader):
            if step >= self.ctx.steps_per_epoch:
                break
            pooled = model.forward_head(model.forward_features(images.to(self.ctx.device)), pre_logits=True)
            sums.index_add_(0, targets.cpu(), F.normalize(pooled.float().cpu(), dim=1))
            counts += torch.bincount(targets.cpu(), minlength=model.num_classes).float()
        seen = counts > 0
        means = sums[seen] / counts[seen, None]
        weight = model.head.weight.data  # (features, classes): the cosine head's layout
        weight[:, seen] = F.normalize(means, dim=1).T.to(weight)
        model.train(was_training)

    def training_step(self, batch: Any, epoch: int) -> StepOutput:
        images, targets = batch
        logits = self.model(images)
        adjusted = logits + self.hparams["la_tau"] * self.log_prior.to(logits)
        loss = F.cross_entropy(adjusted, targets)
        return StepOutput(loss, {"scale": float(getattr(self.model.head, "scale", math.nan))})


@register_method("lift")
def lift(model: nn.Module, ctx: StageContext) -> Objective:
    return LIFTObjective(model, ctx)
