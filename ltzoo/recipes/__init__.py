"""Recipes: one module per method, each registering its zoo entries when imported.

The registry imports every module here on first use (:func:`ltzoo.submodules.import_submodules`), so adding
a method means adding a module, not editing a list; importing them here would be circular.
"""
