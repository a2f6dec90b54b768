"""RSG with LDAM-DRW (CIFAR) or LDAM-DRS (ImageNet-LT, iNat18, Places-LT), after Jianf-Wang/RSG.

The RSG module (:class:`ltzoo.models.rsg.RSG`) is an attribute of the objective, inserted after
backbone stage ``rsg_after_stage`` (1-based, the official ``layerN``: 2 for the CIFAR ResNet-32,
3 for the ImageNet-size ResNets) through :func:`ltzoo.models.split_stages`. The model itself is
untouched, so ``model.safetensors`` and the ONNX graph never contain RSG weights (the official
code strips every ``RSG`` key from its checkpoints for the same reason).

Loss, as in every official train script: ``LDAM(logits of the expanded batch, expanded targets)
+ cesc_weight * CESC + mv_weight * MV`` with 0.1 / 0.01.

``method_args`` (defaults in :data:`RSG_ARGS`, LDAM-DRW's on top of :data:`LDAM_ARGS`):

* ``rsg_after_stage``, ``n_center`` (15), ``contrastive_dim`` (256), ``transfer_strength`` (1.0),
  ``head_ratio`` (0.2: the official scripts' ``--head_tail_ratio``; head classes are the most
  frequent ``int(C * ratio)``), ``cesc_weight`` (0.1), ``mv_weight`` (0.01);
* ``rsg_start_fraction``: generation starts at epoch ``round(fraction * stage.epochs)``, i.e.
  ``epoch_thresh = start - 1`` (official CIFAR: 0.8 of 200 -> epoch_thresh 159; ImageNet-LT 79 of
  100; iNat 139 of 180; Places 9 of 30). Until then the contrastive module trains on pairs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ltzoo.engine.objective import StageContext, StepOutput, register_method
from ltzoo.errors import BadHyperParameterError
from ltzoo.methods.ldam_drw import LDAM_ARGS, LDAMDRWObjective, start_epoch
from ltzoo.models.backbones import split_stages, stage_channels
from ltzoo.models.rsg import RSG, RSGOutput, head_classes_by_count

RSG_ARGS: dict[str, Any] = {
    "rsg_after_stage": 2,
    "n_center": 15,
    "contrastive_dim": 256,
    "transfer_strength": 1.0,
    "head_ratio": 0.2,
    "rsg_start_fraction": 0.8,
    "cesc_weight": 0.1,
    "mv_weight": 0.01,
}


class RSGInsertion(nn.Module):
    """RSG inserted after one stage of a model's backbone, for training forward passes only.

    ``forward(images, targets, epoch)`` runs stem and stages with RSG after stage ``after_stage``
    and returns the last feature map of the *expanded* batch plus RSG's output. The model's stem
    and stages are held outside the module tree, so this module's ``state_dict`` is RSG's alone.
    """

    def __init__(self, model: nn.Module, ctx: StageContext, args: dict[str, Any]) -> None:
        super().__init__()
        stem, stages = split_stages(model.backbone)
        after = args["rsg_after_stage"]
        if not isinstance(after, int) or not 1 <= after <= len(stages):
            raise BadHyperParameterError(
                f"rsg_after_stage={after!r} does not exist: {ctx.recipe.arch} has stages 1..{len(stages)} "
                f"(the official insertion is after layer2 for ResNet-32 and layer3 for ResNet-50/ResNeXt-50)"
            )
        self.__dict__["stem"] = stem
        self.__dict__["stages"] = stages
        self.after_stage = after
        generate_from = start_epoch(args["rsg_start_fraction"], ctx.stage.epochs, "rsg_start_fraction")
        if generate_from is None:
            raise BadHyperParameterError("rsg_start_fraction must be a number in [0, 1] (1.0: never generate)")
        self.rsg = RSG(
            num_classes=ctx.data.num_classes,
            channels=stage_channels(model.backbone)[after - 1],
            head_classes=head_classes_by_count(list(ctx.data.class_counts), args["head_ratio"]),
            n_center=args["n_center"],
            contrastive_dim=args["contrastive_dim"],
            transfer_strength=args["transfer_strength"],
            epoch_thresh=generate_from - 1,
        )

    @property
    def epoch_thresh(self) -> int:
        return self.rsg.epoch_thresh

    def forward(
        self, images: torch.Tensor, targets: torch.Tensor, epoch: int, rsg_rows: int | None = None
    ) -> tuple[torch.Tensor, RSGOutput]:
        """Feature map of ``[RSG rows, generated rows, remaining rows]``.

        RSG sees only the first ``rsg_rows`` rows of the batch (all by default); the other rows
        (e.g. a second contrastive view) go through the same stages without RSG.
        """
        x = self.stem(images)
        out: RSGOutput | None = None
        for index, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if index == self.after_stage:
                rows = x.shape[0] if rsg_rows is None else rsg_rows
                out = self.rsg(x[:rows], targets, epoch)
                x = torch.cat([out.features, x[rows:]])
        assert out is not None
        return x, out


class RSGObjective(LDAMDRWObjective):
    """LDAM(-DRW/-DRS) on the RSG-expanded batch + 0.1 CESC + 0.01 MV."""

    default_args: dict[str, Any] = {**LDAM_ARGS, **RSG_ARGS}

    def __init__(self, model: nn.Module, ctx: StageContext) -> None:
        super().__init__(model, ctx)
        self.rsg = RSGInsertion(model, ctx, self.hparams)

    def training_step(self, batch: Any, epoch: int) -> StepOutput:
        images, targets = batch
        fmap, out = self.rsg(images, targets, epoch)
        cls = self.classification_loss(self.model.forward_head(fmap), out.targets)
        loss = cls + self.hparams["cesc_weight"] * out.cesc + self.hparams["mv_weight"] * out.mv
        logs = {"cls": cls.item(), "cesc": out.cesc.item(), "mv": out.mv.item(), "generated": float(out.num_generated)}
        return StepOutput(loss, logs)


register_method("rsg")(RSGObjective)
