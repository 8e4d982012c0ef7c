"""The three framework wings mirror each other module by module, and nothing imports in a circle.

Read as the layout's specification: the same small modules in every wing, the network's
classes under the same names in the same modules, no module past 700 lines, and no import
cycle (at module level or inside a function) in the core or any wing.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WINGS = {"torch": "xlmr_torch", "tf": "xlmr_tf", "flax": "xlmr_flax"}
# Each wing has these modules; the network reads top to bottom in the first ten.
SHARED_MODULES = (
    "activations",
    "initialisation",
    "embeddings",
    "packing",
    "attention",
    "layer",
    "encoder",
    "pooler",
    "heads",
    "losses",
    "backbone",
    "pretrained",
    "modeling",
    "checkpoint_io",
    "inputs",
    "training",
    "encoding",
    "pipeline",
    "ray_predictor",
)
# Modules whose classes carry the same names in every wing (no framework prefix).
NETWORK_MODULES = ("embeddings", "attention", "layer", "encoder", "pooler", "heads", "packing")
# Framework-only helpers beside the mirrored classes, each for a reason of its framework.
FRAMEWORK_EXTRAS = {
    "flax": {"XLMRobertaLayerList"},  # the layers as one list module, so they can be scanned or remat'ed
}
MAX_LINES = 700
MAX_SHARE = 0.35


def _modules(package: str) -> dict[str, Path]:
    return {path.stem: path for path in sorted((ROOT / package).glob("*.py")) if path.stem != "__init__"}


def _classes(path: Path) -> set[str]:
    """The network's classes a module defines (the `XLMRoberta*` blocks and `Packing`); helpers of
    one framework's own (a Keras embedding table, a packing layout) are not part of the mirror."""
    tree = ast.parse(path.read_text())
    names = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    return {name for name in names if name.startswith("XLMRoberta") or name == "Packing"}


@pytest.mark.parametrize("framework", WINGS)
def test_every_wing_has_the_shared_modules(framework):
    missing = [name for name in SHARED_MODULES if name not in _modules(WINGS[framework])]
    assert not missing, f"{WINGS[framework]} lacks {missing}"


@pytest.mark.parametrize("module", NETWORK_MODULES)
def test_the_network_classes_have_the_same_names_in_every_wing(module):
    names = {
        framework: _classes(ROOT / package / f"{module}.py") - FRAMEWORK_EXTRAS.get(framework, set())
        for framework, package in WINGS.items()
    }
    assert names["torch"] == names["tf"] == names["flax"], names


def test_the_public_models_mirror_each_other():
    def public(package, prefix):
        module = __import__(f"{package}.modeling", fromlist=["*"])
        return {
            name.removeprefix(prefix) for name in module.__all__ if inspect.isclass(getattr(module, name))
        }

    torch_names = public("xlmr_torch", "")
    assert public("xlmr_tf", "TF") == torch_names
    assert public("xlmr_flax", "Flax") == torch_names


@pytest.mark.parametrize("framework", WINGS)
def test_no_module_of_a_wing_is_a_catch_all(framework):
    lines = {name: len(path.read_text().splitlines()) for name, path in _modules(WINGS[framework]).items()}
    too_long = {name: n for name, n in lines.items() if n > MAX_LINES}
    assert not too_long, f"over {MAX_LINES} lines: {too_long}"
    largest = max(lines, key=lines.get)
    assert lines[largest] <= MAX_SHARE * sum(lines.values()), (
        f"{largest} holds {lines[largest]} of {sum(lines.values())}"
    )


def _imports(package: str) -> dict[str, set[str]]:
    """`{module: modules of the same package it imports}`, counting imports inside functions."""
    graph = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        name = ".".join(relative.parts).removesuffix(".__init__")
        is_package = path.name == "__init__.py"
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                found.add(target)
                # `from . import x` imports the submodule x.
                found.update(f"{target}.{alias.name}" for alias in node.names)
        # A module's own packages are imported before it, whatever it imports: not an edge.
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = {m for m in found if m.startswith(package + ".") and m != name and m not in ancestors}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize("package", ["xlmr_core", *WINGS.values()])
def test_no_import_cycle(package):
    cycle = _cycle(_imports(package))
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
