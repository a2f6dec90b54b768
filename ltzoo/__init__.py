"""ltzoo: an inference-ready model zoo for long-tailed image recognition.

>>> import ltzoo
>>> ltzoo.list_models("dscl*")
>>> model = ltzoo.load("ce_resnet32.fmnist_lt", pretrained=False)
>>> transform = ltzoo.create_transform(model)  # PIL image -> the tensor the model takes
>>> session = ltzoo.load_onnx_session("hf-hub:org/repo", variant="int8")

Importing ltzoo registers its models with timm (``timm.create_model("resnet32")``, ``"ltzoo_resnet50"``).
"""

from typing import Any

__version__ = "0.1.0"

from ltzoo.loading import create_model, load  # noqa: E402
from ltzoo.preprocessing import create_transform, data_config  # noqa: E402
from ltzoo.registry import get_entry, list_models  # noqa: E402

# The Hub side pulls in huggingface_hub (and, for pushing, matplotlib/Jinja2): imported on first use.
_LAZY = {"load_onnx_session": "ltzoo.hub.download", "push_to_hub": "ltzoo.hub.push"}
_RENAMED = {"push_to_hub": "push_run"}

__all__ = ["__version__", "create_model", "create_transform", "data_config", "get_entry", "list_models", "load",
           *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), _RENAMED.get(name, name))
    raise AttributeError(f"module 'ltzoo' has no attribute {name!r}")
