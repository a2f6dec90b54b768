"""``--init MODEL``: start training from a trained model's backbone, with a new head for the new classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ltzoo.errors import ConfigMismatchError, LtzooError
from ltzoo.models import LTClassifier
from ltzoo.models.timm_layout import spec_from_config
from ltzoo.names import CONFIG_BLOCK


@dataclass
class Parent:
    """A loaded parent model and what the run records about it (``config.json``'s ``ltzoo.parent``)."""

    model: LTClassifier
    config: dict[str, Any]
    source: str
    hub_repo_id: str | None = None  # where it came from on the Hub (the card's base_model), if it did

    @property
    def arch(self) -> str:
        return spec_from_config(self.config).arch

    @property
    def in_chans(self) -> int:
        return spec_from_config(self.config).in_chans

    @property
    def preprocessing(self) -> dict[str, Any]:
        """Input size (H, W), mean and std the backbone was trained with."""
        cfg = self.config["pretrained_cfg"]
        return {
            "input_size": tuple(int(v) for v in cfg["input_size"][1:]),
            "mean": tuple(cfg["mean"]),
            "std": tuple(cfg["std"]),
        }

    def record(self) -> dict[str, Any]:
        lt = self.config.get(CONFIG_BLOCK, {})
        return {
            "source": self.source,
            "name": lt.get("name"),
            "dataset": lt.get("dataset"),
            "arch": self.arch,
            "num_classes": int(self.config["num_classes"]),
            "weights_sha256": lt.get("weights_sha256"),
            "hub_repo_id": self.hub_repo_id,
            "kept": "backbone (the classifier head was re-initialised for the new classes)",
        }


def load_parent(source: str) -> Parent:
    """Load ``source`` (anything ``ltzoo.load`` accepts) with its config."""
    from ltzoo.loading import load

    model, config = load(source, with_config=True)
    if not config:
        raise LtzooError(
            f"--init {source!r} gave a model without a config; use a trained run, a published zoo model or "
            "hf-hub:ORG/REPO"
        )
    return Parent(model, config, str(source), hub_repo_id(str(source)))


def hub_repo_id(source: str) -> str | None:
    """The Hub repo behind an ``ltzoo.load`` source: ``hf-hub:ORG/NAME[@rev]``, or a zoo name's pinned repo."""
    from ltzoo.source import parse_source

    parsed = parse_source(source)
    if parsed.kind == "hub":
        return parsed.repo_id
    if parsed.kind == "zoo":
        from ltzoo.registry import get_entry

        weights = get_entry(parsed.text).weights
        return weights.repo_id if weights else None
    return None


def init_from_parent(parent: Parent, arch: str, num_classes: int, in_chans: int, head: dict[str, Any]) -> LTClassifier:
    """The parent's model with its backbone kept and a freshly initialised ``head`` for ``num_classes``."""
    if parent.arch != arch:
        raise ConfigMismatchError(
            f"--init {parent.source} is a {parent.arch}, but the recipe trains a {arch}; choose a recipe of the same "
            f"architecture (e.g. `ltzoo list '*_{parent.arch}*'`)"
        )
    if parent.in_chans != in_chans:
        raise ConfigMismatchError(
            f"--init {parent.source} takes {parent.in_chans}-channel images but the data gives {in_chans}; its "
            "backbone cannot be reused on this data"
        )
    model = parent.model
    model.reset_classifier(num_classes, head=dict(head))
    model.train()
    return model
