"""Loss functions, one module per family (see ltzoo/losses/*.py)."""
