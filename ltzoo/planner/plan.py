"""What ``ltzoo train`` hands the trainer: a recipe, an :class:`~ltzoo.data.LTDataset` and optionally an
initial model. One path for a zoo dataset and for the user's own data (``--data``), with or without
``--init``; only the user's data gets recipe knobs derived from its size (:mod:`ltzoo.planner.derived`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ltzoo.data import LTDataset, build_dataset
from ltzoo.data.sources import SourceSpec, parse_shot_thresholds
from ltzoo.errors import BadHyperParameterError
from ltzoo.models import LTClassifier
from ltzoo.planner.derived import Overrides, derive_recipe, format_derived
from ltzoo.planner.finetune import Parent, init_from_parent, load_parent
from ltzoo.recipe import METHODS_NEEDING_RESNET_STAGES, Recipe, method_knobs
from ltzoo.registry import get_entry

# The network input side per architecture on user data: the CIFAR ResNet-32 at CIFAR's 32 px, the
# ImageNet ResNets at 224 px. With --init, the parent's input size wins.
ARCH_INPUT_SIZE = {"resnet32": (32, 32)}
IMAGENET_INPUT_SIZE = (224, 224)


@dataclass
class TrainingPlan:
    name: str
    recipe: Recipe
    data: LTDataset
    model: LTClassifier | None = None
    extra_config: dict[str, Any] = field(default_factory=dict)
    derived: dict[str, Any] | None = None
    epochs: int | None = None  # zoo data only: the trainer's --epochs rescaling (own data: already in the recipe)

    def describe(self) -> str:
        lines = [f"training {self.name} on {self.data.name}"]
        if self.extra_config.get("parent"):
            lines.append(f"initialised from {self.extra_config['parent']['source']} (backbone kept, new head)")
        if self.derived:
            lines.append(format_derived(self.derived))
        return "\n".join(lines)


def input_size_for(arch: str) -> tuple[int, int]:
    return ARCH_INPUT_SIZE.get(arch, IMAGENET_INPUT_SIZE)


def _source_spec(
    data: str, arch: str, parent: Parent | None, shot_thresholds: str | None, skip_bad: bool
) -> SourceSpec:
    spec = SourceSpec.parse(data)
    changes: dict[str, Any] = {"input_size": input_size_for(arch)}
    if parent is not None:
        # The backbone keeps seeing what it was trained on: its channel count, input size and normalisation.
        changes.update(in_chans=parent.in_chans, **parent.preprocessing)
    if shot_thresholds is not None:
        changes["shots"] = parse_shot_thresholds(shot_thresholds)
    if skip_bad:
        changes["skip_bad"] = True
    spec = dataclasses.replace(spec, **changes)
    spec.validate()
    return spec


def plan_training(
    zoo_name: str,
    *,
    data: str | None = None,
    data_root: str | None = None,
    init: str | None = None,
    arch: str | None = None,
    shot_thresholds: str | None = None,
    skip_bad_images: bool = False,
    overrides: Overrides | None = None,
) -> TrainingPlan:
    """Resolve a ``ltzoo train`` command into a :class:`TrainingPlan`.

    ``data`` is a user source (``imagefolder:PATH`` / ``splits:ROOT``); without it the zoo entry's own
    dataset is used (from ``data_root``), and only ``overrides.epochs`` applies. The zoo entry names the method
    and its recipe; the backbone is the entry's, or ``arch`` (any timm architecture, on your data), or the
    ``--init`` model's (whose architecture the run adopts: the method trains on it).
    """
    entry = get_entry(zoo_name)
    recipe = entry.recipe()
    overrides = overrides or Overrides()
    parent = load_parent(init) if init else None
    backbone = _backbone_arch(recipe.arch, arch, parent)
    if backbone != recipe.arch:
        recipe = recipe.replace(arch=backbone)
    check_method_fits(recipe)
    if data is None:
        _refuse_own_data_options(entry.name, shot_thresholds, skip_bad_images, arch, overrides)
        dataset = build_dataset(recipe.dataset, data_root)
        name, derived, epochs = _run_name(entry.name, recipe.arch, entry.arch), None, overrides.epochs
    else:
        if data_root is not None:
            raise BadHyperParameterError("--data-root is for zoo datasets; with --data the source names the path")
        spec = _source_spec(data, recipe.arch, parent, shot_thresholds, skip_bad_images)
        dataset = build_dataset(spec)  # parsed once: the spec travels, its name is the record
        recipe, derived = derive_recipe(
            recipe.replace(dataset=dataset.name),
            len(dataset.train),
            dataset.num_classes,  # type: ignore[arg-type]
            finetune=parent is not None,
            overrides=overrides,
        )
        name, epochs = _run_name(f"{entry.base_name}.{spec.display_name}", recipe.arch, entry.arch), None
    check_trainable(recipe)
    extra: dict[str, Any] = {"zoo_recipe": entry.name}
    if derived is not None:
        extra["derived"] = derived
    model = None
    if parent is not None:
        model = init_from_parent(parent, dataset.num_classes, dataset.info.in_chans, recipe.head)
        extra["parent"] = parent.record()
    return TrainingPlan(name, recipe, dataset, model, extra, derived, epochs)


def _backbone_arch(recipe_arch: str, arch: str | None, parent: Parent | None) -> str:
    """The run's backbone: the --init model's, else --arch, else the zoo entry's."""
    from ltzoo.models.backbones import BACKBONES, build_backbone, is_timm_arch

    if parent is not None:
        if arch is not None and arch != parent.arch:
            raise BadHyperParameterError(
                f"--arch {arch} but --init {parent.source} is a {parent.arch}: the run "
                "trains the --init model's backbone; leave --arch out"
            )
        return parent.arch
    if arch is not None and arch not in BACKBONES and not is_timm_arch(arch):
        build_backbone(arch)  # unknown: raises with close matches
    return arch or recipe_arch


def _run_name(name: str, arch: str, entry_arch: str) -> str:
    """``ce_resnet50.mydata`` -> ``ce_convnext_tiny.mydata`` when the run trains another backbone."""
    return name if arch == entry_arch else name.replace(f"_{entry_arch}", f"_{arch}", 1)


def _refuse_own_data_options(
    name: str, shot_thresholds: str | None, skip_bad: bool, arch: str | None, overrides: Overrides
) -> None:
    knobs = method_knobs()
    own_data_only = {
        "--shot-thresholds": shot_thresholds,
        "--skip-bad-images": skip_bad or None,
        "--arch": arch,
        "--batch-size": overrides.batch_size,
        "--lr": overrides.lr,
        "--trainable": overrides.trainable,
        **{knobs[key].option: value for key, value in overrides.method_args.items()},
    }
    given = [option for option, value in own_data_only.items() if value is not None]
    if given:
        raise BadHyperParameterError(
            f"{', '.join(given)} apply to your own data (--data imagefolder:PATH or splits:ROOT); "
            f"{name} keeps its published settings (only --epochs rescales it)"
        )


def check_method_fits(recipe: Recipe) -> None:
    """A method that inserts a module between a ResNet's stages (RSG, the synergy) refuses other backbones here,
    before any data is read."""
    if recipe.method in METHODS_NEEDING_RESNET_STAGES:
        from ltzoo.models.backbones import build_backbone, split_stages

        split_stages(build_backbone(recipe.arch, 3))


def check_trainable(recipe: Recipe) -> None:
    """``--trainable last:N`` within the backbone's depth, said before any training."""
    deepest = max((int(s.train.split(":")[1]) for s in recipe.stages if s.train.startswith("last:")), default=0)
    if deepest:
        from ltzoo.models.backbones import build_backbone, trainable_groups

        groups = len(trainable_groups(build_backbone(recipe.arch, 3)))
        if deepest > groups:
            raise BadHyperParameterError(
                f"--trainable last:{deepest}, but {recipe.arch} has {groups} groups (stages or blocks); use "
                f"last:1 to last:{groups}, all or head"
            )


def run_plan(plan: TrainingPlan, out_dir: str, **trainer_options: Any) -> dict[str, Any]:
    """Train a plan with :class:`~ltzoo.engine.trainer.Trainer` (options: resume, max_steps, steps_per_epoch,
    seed, device, precision, channels_last, compile, log_format)."""
    from ltzoo.engine.trainer import train

    return train(
        plan.recipe,
        out_dir,
        name=plan.name,
        data=plan.data,
        model=plan.model,
        extra_config=plan.extra_config,
        epochs=plan.epochs,
        **trainer_options,
    )
