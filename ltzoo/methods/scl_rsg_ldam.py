"""SCL + RSG + LDAM trained jointly, end to end (Wang, Lassila, Ali; arXiv 2501.13756).

No code has been published for the paper. Its full text exists (arxiv.org/html/2501.13756v1), but
the search index ltzoo was built with returns only its opening (authors, abstract, start of the
introduction): the loss weights, the schedule, how the three parts are wired and the reported numbers
could not be read, so none of them is checked here. The abstract fixes: SCL, RSG and LDAM trained
together end to end, and the claims the ablation benchmark measures. So the combination is built from
the official building blocks (SupContrast, Jianf-Wang/RSG, kaidic/LDAM-DRW) and every open choice
below is ltzoo's, switchable through ``method_args`` (defaults in :data:`SYNERGY_ARGS`) so that the
ablation benchmark can remove one part at a time.

One stage, one backbone. Every step, for a batch of B images with two views each:

1. both views go through the backbone together; RSG (:class:`~ltzoo.methods.rsg.RSGInsertion`)
   sits after stage ``rsg_after_stage`` and sees **view 1 only**: the pair term of its contrastive
   module pairs the first half of its input with the second half, which for stacked views would be
   the same image twice. It appends G generated tail maps after view 1's maps;
2. the pooled features of ``[view 1, generated, view 2]`` feed
   * the **LDAM cosine classifier with DRW** (the model's own head): on view 1 and the generated rows
     with RSG's expanded targets, exactly as in the RSG recipe;
   * an MLP **projection head** (training only) and the **SupCon** loss over the 2B views
     (``generated_in_supcon``: also the G generated rows as single-view anchors with their tail
     labels; their positives are the real views of the same class; default off, so generated
     features take part in the classification loss only, as in RSG);
3. ``loss = cls_weight * LDAM + supcon_weight * SupCon + cesc_weight * CESC + mv_weight * MV``.

Choices and why:

* view 1 uses the dataset's standard augmentation (what LDAM-DRW and RSG train on), view 2 the
  SupContrast augmentation (``second_view="supcon"``; ``"standard"`` uses the standard one twice);
* ``cls_weight`` 1.0, ``supcon_weight`` 0.5: the classifier loss leads and the contrastive term
  regularises the representation; not tuned (no readable source to follow, and no tuning on test);
* the RSG weights 0.1 / 0.01, ``n_center`` 15, ``head_ratio`` 0.2 and the LDAM values are the
  official ones; generation (``rsg_start_fraction``) and DRW (``drw_start_fraction``) switch on at
  the same epoch, as in RSG's CIFAR script (epoch_thresh 159, DRW at 160);
* ablation switches: ``use_rsg`` (False: no RSG module), ``supcon_weight`` 0 (no projection head,
  no second view), ``max_m`` 0 (no LDAM margins: a scaled cosine softmax, DRW kept),
  ``generated_in_supcon``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ltzoo.data.transforms import MultiView
from ltzoo.engine.objective import StageContext, StepOutput, register_method
from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.supcon import supcon_loss
from ltzoo.methods.ldam_drw import LDAM_ARGS, LDAMDRWObjective
from ltzoo.methods.rsg import RSG_ARGS, RSGInsertion
from ltzoo.methods.scl import SCL_ARGS, build_projection, check_temperatures, supcon_augmentation

SECOND_VIEWS = ("supcon", "standard")

SYNERGY_ARGS: dict[str, Any] = {
    **LDAM_ARGS,
    **RSG_ARGS,
    **SCL_ARGS,
    "use_rsg": True,
    "cls_weight": 1.0,
    "supcon_weight": 0.5,
    "generated_in_supcon": False,
    "second_view": "supcon",
}


class SynergyObjective(LDAMDRWObjective):
    """LDAM-DRW classifier + SupCon projection + RSG on the feature map, in one stage."""

    default_args: dict[str, Any] = SYNERGY_ARGS

    def __init__(self, model: nn.Module, ctx: StageContext) -> None:
        super().__init__(model, ctx)
        args = self.hparams
        if args["second_view"] not in SECOND_VIEWS:
            raise BadHyperParameterError(f"second_view must be one of {SECOND_VIEWS}, got {args['second_view']!r}")
        for key in ("cls_weight", "supcon_weight", "cesc_weight", "mv_weight"):
            if args[key] < 0:
                raise BadHyperParameterError(f"loss weight {key} must be >= 0, got {args[key]}")
        self.contrastive = args["supcon_weight"] > 0
        if self.contrastive:
            check_temperatures(args)
            self.projection = build_projection(model, args)
        if args["use_rsg"]:
            self.rsg = RSGInsertion(model, ctx, args)

    def train_transform(self) -> Callable[[Any], Any]:
        standard = super().train_transform()
        if not self.contrastive:
            return standard
        second = (
            supcon_augmentation(self.ctx.data, self.hparams["view_crop"], float(self.hparams["view_scale_min"]))
            if self.hparams["second_view"] == "supcon"
            else standard
        )
        return MultiView(standard, second)

    def training_step(self, batch: Any, epoch: int) -> StepOutput:
        images, targets = batch
        views = list(images) if self.contrastive else [images]
        batch_size = targets.shape[0]
        stacked = torch.cat(views)
        logs: dict[str, float] = {}
        loss = stacked.new_zeros(())
        if self.hparams["use_rsg"]:
            fmap, out = self.rsg(stacked, targets, epoch, rsg_rows=batch_size)
            cls_targets, generated = out.targets, out.num_generated
            loss = loss + self.hparams["cesc_weight"] * out.cesc + self.hparams["mv_weight"] * out.mv
            logs.update(cesc=out.cesc.item(), mv=out.mv.item(), generated=float(generated))
        else:
            fmap, cls_targets, generated = self.model.forward_features(stacked), targets, 0
        pooled = self.model.forward_head(fmap, pre_logits=True)  # rows: view 1, generated, view 2
        classified = batch_size + generated
        cls = self.classification_loss(self.model.head(pooled[:classified]), cls_targets)
        loss = loss + self.hparams["cls_weight"] * cls
        logs["cls"] = cls.item()
        if self.contrastive:
            rows = (
                pooled if self.hparams["generated_in_supcon"] else torch.cat([pooled[:batch_size], pooled[classified:]])
            )
            labels = torch.cat([cls_targets, targets]) if self.hparams["generated_in_supcon"] else targets.repeat(2)
            contrast = supcon_loss(
                self.projection(rows), labels, self.hparams["temperature"], self.hparams["base_temperature"]
            )
            loss = loss + self.hparams["supcon_weight"] * contrast
            logs["supcon"] = contrast.item()
        return StepOutput(loss, logs)


register_method("scl_rsg_ldam")(SynergyObjective)
