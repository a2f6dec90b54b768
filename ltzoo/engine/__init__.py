"""Training and evaluation: the trainer (stages, checkpoints, resume, DDP), the contract between the trainer
and a method (``objective``), the evaluator (PyTorch and ONNX Runtime alike) and what ``ltzoo train`` plans.

Nothing is imported here: import the module you need (``ltzoo.engine.trainer``, ``ltzoo.engine.evaluator``,
...), so that evaluating a model does not load the trainer.
"""
