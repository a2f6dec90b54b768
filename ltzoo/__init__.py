"""ltzoo: an inference-ready model zoo for long-tailed image recognition.

>>> import ltzoo
>>> ltzoo.list_models("dscl*")
>>> model = ltzoo.load("ce_resnet32.fmnist_lt", pretrained=False)
"""

__version__ = "0.1.0"

from ltzoo.loading import create_model, load  # noqa: E402
from ltzoo.registry import get_entry, list_models  # noqa: E402

__all__ = ["__version__", "create_model", "get_entry", "list_models", "load"]
