"""Training objectives, one module per method (see ltzoo.engine.objective for the contract)."""
