"""The layers of docs/architecture.md and what each may import, checked on the source of every module.

Every `import` and `from ... import` statement counts, wherever it stands: at module level, inside a
function, under `if TYPE_CHECKING:`. Imports made by name at run time (`importlib.import_module`) are
not seen; the two in the tree (`peppp.cli` -> `peppp.commands.*`, `flows` -> `flows.*`) stay within
their layer.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_PACKAGES = ("peppp", "flows")

# Bottom to top, as in docs/architecture.md. A module belongs to the layer of the entry that equals its
# name or is a package above it; the package `peppp` itself (its `__init__`) is the façade, top layer.
LAYERS: dict[str, tuple[str, ...]] = {
    "base": ("peppp.errors", "peppp.cells", "peppp._io", "peppp._params", "peppp._checks"),
    "core": (
        "peppp.formats",
        "peppp.memory",
        "peppp.pareto",
        "peppp.completion",
        "peppp.design",
        "peppp.methods",
        "peppp.evaluate",
        "peppp.matrices",
        "peppp.frontier",
        "peppp.active",
        "peppp.plots",
        "peppp.report",
    ),
    "training": ("peppp.training",),
    "store": ("peppp.tracking", "peppp.registry"),
    "flows": ("flows",),
    "interface": ("peppp.cli", "peppp.commands"),
}
FACADE = "peppp"

# The layers whose modules each layer may import (its own included).
MAY_IMPORT: dict[str, set[str]] = {
    "base": {"base"},
    "core": {"base", "core"},
    "training": {"base", "core", "training"},
    "store": {"base", "core", "store"},
    "flows": {"base", "core", "training", "store", "flows"},
    "interface": set(LAYERS),
}

# Packages that only some layers (or single modules) may import; any other package is free to all.
ONLY_IN: dict[str, set[str]] = {
    "mlflow": {"store"},
    "sqlalchemy": {"store"},
    "prefect": {"flows"},
    "prefect_dask": {"flows"},
    "dask": {"flows"},
    "distributed": {"flows"},
    "qtorch": {"training"},
    "triton": {"training"},
    # memory counts a built model's activations with forward hooks; a command asks torch for GPUs.
    "torch": {"training", "interface", "peppp.memory"},
    # servers for tests and benchmarks, outside the installed package
    "devtools": set(),
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (or package), absolute
    line: int

    def __str__(self) -> str:
        return f"{self.module} imports {self.target} (line {self.line})"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(source: str, module: str, *, is_package: bool, known: set[str]) -> list[Import]:
    """Every import statement of `source` (the module `module`), relative ones made absolute. For
    `from A import B`, the target is A.B where that is a module in `known`, else A."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.append(Import(module, target if target in known else base, node.lineno))
    return found


def scan(root: Path) -> tuple[list[str], list[Import]]:
    paths = sorted(p for package in RUNTIME_PACKAGES for p in (root / package).rglob("*.py"))
    modules = [module_name(p, root) for p in paths]
    known = set(modules)
    found = []
    for path, module in zip(paths, modules):
        found += imports_in(path.read_text(), module, is_package=path.name == "__init__.py", known=known)
    return modules, found


MODULES, IMPORTS = scan(ROOT)


def layer_of(module: str) -> str | None:
    if module == FACADE:
        return "interface"
    for layer, entries in LAYERS.items():
        if any(module == entry or module.startswith(entry + ".") for entry in entries):
            return layer
    return None


def allowed(module: str, places: set[str]) -> bool:
    return layer_of(module) in places or any(module == p or module.startswith(p + ".") for p in places)


def test_the_scan_sees_the_whole_tree():
    assert len(MODULES) > 60 and {"peppp", "peppp.memory", "flows", "flows.meta_train"} <= set(MODULES)
    edges = {(i.module, i.target) for i in IMPORTS}
    # a module-level import, one inside a function, one under TYPE_CHECKING
    assert ("peppp.training.engine", "peppp.memory") in edges
    assert ("peppp", "peppp.registry") in edges
    assert ("peppp.memory", "torch") in edges


def test_imports_in_reads_every_kind_of_import():
    source = """
import os.path, numpy as np
from typing import TYPE_CHECKING
from pkg import sub, name
from . import sibling
from .. import cousin
from .inner import thing
if TYPE_CHECKING:
    from mlflow import MlflowClient

def f():
    import prefect
    class C:
        def g(self):
            from flows.meta_train import meta_train
"""
    known = {"pkg.sub", "top.mid.sibling", "top.cousin"}
    got = [(i.target, i.line) for i in imports_in(source, "top.mid.mod", is_package=False, known=known)]
    assert sorted(got) == sorted(
        [
            ("os.path", 2),
            ("numpy", 2),
            ("typing", 3),
            ("pkg.sub", 4),
            ("pkg", 4),
            ("top.mid.sibling", 5),
            ("top.cousin", 6),
            ("top.mid.inner", 7),
            ("mlflow", 9),
            ("prefect", 12),
            ("flows.meta_train", 15),
        ]
    )
    # In a package's __init__, `.` is the package itself.
    assert [i.target for i in imports_in("from . import a", "top.mid", is_package=True, known={"top.mid.a"})] == ["top.mid.a"]


def test_layer_of_and_allowed():
    assert layer_of("peppp") == "interface" and layer_of("peppp.memory") == "core"
    assert layer_of("peppp.training.quant.triton_kernels") == "training" and layer_of("flows._cells") == "flows"
    assert layer_of("peppp.formatsx") is None and layer_of("peppp.new_module") is None
    assert allowed("peppp.memory", {"training", "peppp.memory"}) and not allowed("peppp.pareto", {"training", "peppp.memory"})


def test_every_module_is_in_a_layer():
    unplaced = [m for m in MODULES if layer_of(m) is None]
    assert not unplaced, f"modules in no layer (add them to docs/architecture.md and LAYERS here): {unplaced}"


@pytest.mark.parametrize("layer", list(LAYERS))
def test_a_layer_imports_only_the_layers_it_may(layer):
    bad = [
        str(i)
        for i in IMPORTS
        if layer_of(i.module) == layer
        and i.target.split(".")[0] in RUNTIME_PACKAGES
        and layer_of(i.target) not in MAY_IMPORT[layer]
    ]
    assert not bad, f"{layer} may import only {sorted(MAY_IMPORT[layer])}:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", list(ONLY_IN))
def test_a_package_is_imported_only_where_allowed(package):
    bad = [str(i) for i in IMPORTS if i.target.split(".")[0] == package and not allowed(i.module, ONLY_IN[package])]
    assert not bad, f"{package} may be imported only by {sorted(ONLY_IN[package]) or 'no runtime module'}:\n" + "\n".join(bad)
