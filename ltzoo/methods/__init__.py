"""Training objectives, one module per method (see ltzoo.engine.objective for the contract).

Each module registers its methods when imported; :func:`ltzoo.engine.objective.get_method` imports them all on
first use.
"""
