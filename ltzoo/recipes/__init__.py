"""Recipes: one module per method, each registering its zoo entries.

:func:`load_all` imports every submodule, so adding a method means adding a module, not editing a
list. The registry calls it on first use (importing here directly would be circular).
"""

import importlib
import pkgutil

_loaded = False


def load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
