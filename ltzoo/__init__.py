"""ltzoo: an inference-ready model zoo for long-tailed image recognition.

>>> import ltzoo
>>> ltzoo.list_models("dscl*")
>>> model = ltzoo.load("ce_resnet32.fmnist_lt", pretrained=False)
>>> transform = ltzoo.create_transform(model)  # PIL image -> the tensor the model takes
>>> session = ltzoo.load_onnx_session("hf-hub:org/repo", variant="int8")

``import ltzoo`` is cheap: torch, timm and huggingface_hub load on the first use of a name that needs them,
so ``ltzoo --help`` and ``ltzoo list`` answer at once. Importing ltzoo still registers its models with timm
(``timm.create_model("resnet32")``, ``"ltzoo_resnet50"``): at once when timm is already imported, otherwise
as soon as timm is.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

from ltzoo.version import __version__

# public name -> (module, attribute): each imported on first use (PEP 562)
_LAZY = {
    "create_model": ("ltzoo.loading", "create_model"),
    "load": ("ltzoo.loading", "load"),
    "create_transform": ("ltzoo.preprocessing", "create_transform"),
    "data_config": ("ltzoo.preprocessing", "data_config"),
    "get_entry": ("ltzoo.registry", "get_entry"),
    "list_models": ("ltzoo.registry", "list_models"),
    "load_onnx_session": ("ltzoo.export.sessions", "load_onnx_session"),
    "push_to_hub": ("ltzoo.publish.push", "push_run"),
}

__all__ = ["__version__", *sorted(_LAZY)]

_TIMM_MODELS = "ltzoo.models.timm_models"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # the next lookup is a plain attribute
        return value
    raise AttributeError(f"module 'ltzoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _RegisterAfterTimm(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``timm`` is first imported, it wraps timm's loader so that ltzoo's timm
    models are registered right after timm's own module has run, then steps out of ``sys.meta_path``."""

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None:
            return spec
        run_timm = spec.loader.exec_module

        def run_timm_then_register(module: ModuleType) -> None:
            run_timm(module)
            # ltzoo.models registers the models itself once it is imported (it imports timm on its way):
            # registering from here while it is half-imported would be a circular import.
            if "ltzoo.models" not in sys.modules:
                importlib.import_module(_TIMM_MODELS)

        spec.loader.exec_module = run_timm_then_register  # type: ignore[method-assign]
        return spec


if "timm" in sys.modules:
    importlib.import_module(_TIMM_MODELS)
elif not any(isinstance(finder, _RegisterAfterTimm) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterTimm())
