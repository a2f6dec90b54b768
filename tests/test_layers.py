"""The picture of the house: ltzoo's layers, and a test that every import points down (or stays level).

Read from the top: each layer may import the layers below it, never one above. An import inside a function
counts like one at the top of a module (it is the same dependency, only later); what a module loads by name
(``import_submodules("ltzoo.methods")``, the registry's plug-ins) is not an import and is not read.

    front       ltzoo (the lazy package top), __main__, cli, preprocessing (ltzoo.data_config/create_transform)
    planner     planner: what `ltzoo train` hands the trainer (plan, derived settings, --init); selection:
                `ltzoo select`, the race of the recipes on the data and the deployable winner
    publish     publish: a run, its card and pictures, the zoo, pushed to the Hub
    export      export: ONNX graphs, their checks and gate, ONNX Runtime sessions
    work        engine (trainer, evaluator), methods (training objectives), calibration (post-hoc, on val)
    artifacts   runs (run directories), loading (ltzoo.load), hub (fetching from the Hub), portable, predict,
                convert_official
    blocks      precision, memory_format, plotting, data, losses, models
    catalogue   recipe (the schema), recipes (the tables), registry, pins, preflight: no torch, so `ltzoo list`
                answers at once
    foundation  errors, names, version, fileio, source, submodules, process_group, testing
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ltzoo"

LAYERS: dict[str, list[str]] = {  # top first
    "front": ["ltzoo", "ltzoo.__main__", "ltzoo.cli", "ltzoo.preprocessing"],
    "planner": ["ltzoo.planner", "ltzoo.selection"],
    "publish": ["ltzoo.publish"],
    "export": ["ltzoo.export"],
    "work": ["ltzoo.engine", "ltzoo.methods", "ltzoo.calibration"],
    "artifacts": [
        "ltzoo.runs",
        "ltzoo.loading",
        "ltzoo.hub",
        "ltzoo.portable",
        "ltzoo.predict",
        "ltzoo.convert_official",
    ],
    "blocks": [
        "ltzoo.precision",
        "ltzoo.memory_format",
        "ltzoo.plotting",
        "ltzoo.data",
        "ltzoo.losses",
        "ltzoo.models",
    ],
    "catalogue": ["ltzoo.recipe", "ltzoo.recipes", "ltzoo.registry", "ltzoo.pins", "ltzoo.preflight"],
    "foundation": [
        "ltzoo.errors",
        "ltzoo.names",
        "ltzoo.version",
        "ltzoo.fileio",
        "ltzoo.source",
        "ltzoo.submodules",
        "ltzoo.process_group",
        "ltzoo.testing",
    ],
}
HEIGHT = {prefix: len(LAYERS) - index for index, prefixes in enumerate(LAYERS.values()) for prefix in prefixes}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> tuple[str, int]:
    """The longest listed prefix of ``module`` and its height; a module no layer lists fails the test."""
    candidates = [p for p in HEIGHT if module == p or module.startswith(p + ".")]
    if not candidates:
        raise AssertionError(f"{module} is in no layer of tests/test_layers.py: place it in the picture")
    prefix = max(candidates, key=len)
    return prefix, HEIGHT[prefix]


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """Every ``ltzoo`` module ``path`` imports (names imported from a package count as the package), with lines."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:  # `from ltzoo.cli import export` imports the module ltzoo.cli.export
                candidate = f"{base}.{alias.name}"
                is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").is_file() or (
                    PACKAGE.parent / candidate.replace(".", "/") / "__init__.py"
                ).is_file()
                found.append((candidate if is_module else base, node.lineno))
    return [(name, line) for name, line in found if name == "ltzoo" or name.startswith("ltzoo.")]


def upward_imports() -> list[str]:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        where, height = layer_of(importer)
        for imported, line in imported_modules(path):
            to, to_height = layer_of(imported)  # the package top `ltzoo` is the front door: nothing below imports it
            if to_height > height:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {where} imports {imported} ({to}, higher)")
    return upward


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path))


def test_every_import_points_down():
    assert upward_imports() == []


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The test above could fail: a module of the foundation that imported the engine would be named."""
    errors = PACKAGE / "errors.py"
    source = errors.read_text()
    monkeypatch.setattr(
        Path,
        "read_text",
        lambda self, *a, **k: (
            source + "\nfrom ltzoo.engine import trainer\n" if self == errors else Path.read_bytes(self).decode()
        ),
    )
    found = upward_imports()
    assert any(item.startswith("ltzoo/errors.py:") and "ltzoo.engine.trainer" in item for item in found), found


def test_a_method_is_one_file_per_concern_under_one_name():
    """The pattern a new method follows (README, "Layout"): its recipe tables in ``ltzoo/recipes/F.py`` (torch-free:
    `ltzoo list` reads them), its training objectives in ``ltzoo/methods/F.py``, its own loss, if any, in
    ``ltzoo/losses/F.py``, and one card text per zoo method in ``model_cards/methods/``. The baselines (CE,
    CE + weight decay) train with the engine's plain objective."""
    from ltzoo.engine.objective import _METHODS, get_method
    from ltzoo.registry import get_entry, list_models

    root = PACKAGE.parent
    for name in list_models():
        method = get_entry(name).method
        assert (root / "model_cards" / "methods" / f"{method}.md").is_file(), f"{name}: no card text for {method}"
        module = get_method(get_entry(name).recipe().method).__module__
        family = module.rpartition(".")[2]
        assert module == "ltzoo.engine.objective" or (
            module == f"ltzoo.methods.{family}" and (PACKAGE / "recipes" / f"{family}.py").is_file()
        ), f"{name}: objective in {module}, recipes not in ltzoo/recipes/{family}.py"
    for objective in _METHODS.values():
        family = objective.__module__.rpartition(".")[2]
        if objective.__module__.startswith("ltzoo.methods."):
            assert (PACKAGE / "recipes" / f"{family}.py").is_file(), f"{objective.__module__} has no recipes module"
