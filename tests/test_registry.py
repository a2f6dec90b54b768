import subprocess
import sys

import pytest

import ltzoo
from ltzoo.errors import LtzooError, UnknownModelError, WeightsNotPublishedError


def test_wildcards_match_names_and_tags():
    ce = ltzoo.list_models("ce_*")
    assert "ce_resnet32.fmnist_lt" in ce and "ce_resnet50.imagenet_lt" in ce
    assert all(name.startswith("ce_") for name in ce)
    # a pattern without a tag matches every tag of a name (timm behaviour)
    assert ltzoo.list_models("ce_resnet32") == [
        "ce_resnet32.cifar100_lt",
        "ce_resnet32.cifar10_lt",
        "ce_resnet32.fmnist_lt",
    ]
    assert ltzoo.list_models("*.fmnist_lt", exclude="ce_*") == [
        n for n in ltzoo.list_models("*.fmnist_lt") if not n.startswith("ce_")
    ]
    assert ltzoo.list_models("no_such_thing*") == []


def test_default_tag_and_explicit_tag():
    assert ltzoo.get_entry("ce_resnet32").name == "ce_resnet32.cifar100_lt"
    entry = ltzoo.get_entry("ce_resnet32.fmnist_lt")
    assert (entry.method, entry.arch, entry.tag) == ("ce", "resnet32", "fmnist_lt")
    assert entry.recipe().dataset == "fmnist_lt"


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownModelError, match="Did you mean: ce_resnet32"):
        ltzoo.get_entry("ce_resnet23")
    with pytest.raises(
        UnknownModelError, match="has no tag 'mnist'; available tags: cifar100_lt, cifar10_lt, fmnist_lt"
    ):
        ltzoo.get_entry("ce_resnet32.mnist")


def test_unpublished_weights_say_how_to_train():
    with pytest.raises(WeightsNotPublishedError, match="ltzoo train ce_resnet32.fmnist_lt --out"):
        ltzoo.load("ce_resnet32.fmnist_lt")


def test_path_like_strings_are_not_zoo_names(tmp_path):
    with pytest.raises(LtzooError, match="local-dir:PATH"):
        ltzoo.load("org/not-a-dir")


def test_untrained_model_matches_the_entry():
    model = ltzoo.load("ce_resnet32.fmnist_lt", pretrained=False)
    assert model.num_classes == 10 and not model.training
    # ResNet-32 of LDAM-DRW: 0.46M parameters (recomputed, with a 1-channel stem and 10 classes)
    n_params = sum(p.numel() for p in model.parameters())
    assert 460_000 < n_params < 470_000
    assert ltzoo.create_model("ce_resnet50.imagenet_lt").num_classes == 1000


def test_methods_load_themselves_in_a_fresh_process():
    """get_method finds every method with no recipe module imported first (the method registry used to hold only
    ``ce`` until something happened to load the zoo's recipes)."""
    script = (
        "import sys\n"
        "from ltzoo.engine.objective import get_method, stage_only_args\n"
        "assert 'ltzoo.recipes.dscl' not in sys.modules and 'ltzoo.methods.dscl' not in sys.modules\n"
        "print(get_method('dscl').__name__, sorted(stage_only_args('dscl')['classifier']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["dscl_objective", "['classifier_augment',", "'probe_bn']"]


def test_every_registry_refuses_a_name_registered_twice():
    from torch import nn

    from ltzoo.engine.objective import Objective, get_method, register_method
    from ltzoo.models.heads import HEADS, LinearHead, register_head
    from ltzoo.registry import register_recipes

    before = ltzoo.get_entry("ce_resnet32.fmnist_lt").recipe_fn
    with pytest.raises(ValueError, match=r"zoo names already registered: ce_resnet32, ce_resnet32\.fmnist_lt;"):
        register_recipes("ce", {"resnet32.mnist": before, "resnet32.fmnist_lt": before})
    assert ltzoo.get_entry("ce_resnet32.fmnist_lt").recipe_fn is before
    assert ltzoo.list_models("ce_resnet32.mnist") == []  # nothing of the refused call was registered

    with pytest.raises(ValueError, match="method 'ce' is already registered"):
        register_method("ce")(Objective)
    assert get_method("ce") is Objective

    with pytest.raises(ValueError, match="head type 'linear' is already registered"):
        register_head("linear")(nn.Linear)
    assert HEADS["linear"] is LinearHead
