"""Importing every module of a package: how the registries find the recipes and methods that register themselves.

Adding a recipe or a method means adding a module to ``ltzoo/recipes`` or ``ltzoo/methods``, not editing a
list; the registry that needs them imports them on first use (:func:`ltzoo.registry.get_entry`,
:func:`ltzoo.engine.objective.get_method`).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache


@cache
def import_submodules(package: str) -> None:
    """Import every module directly inside ``package``, once per process."""
    root = importlib.import_module(package)
    for module in pkgutil.iter_modules(root.__path__):
        importlib.import_module(f"{package}.{module.name}")
