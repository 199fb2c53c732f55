"""The package's imports point down the layers, form no cycle and take no private names.

Layers, lowest first (docs/design.md): the vocabulary (errors, grading, result, backend,
version) -> data -> models and synthetic (side by side) -> training -> serving -> the apps
(commands, cli, web and the package's own lazy public API). Every import counts, also those
inside functions and under ``TYPE_CHECKING``: each is an arrow a reader has to follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "retinascreen"
ROOT = "retinascreen"

RANKS = {
    "errors": 0,
    "grading": 0,
    "result": 0,
    "backend": 0,
    "version": 0,
    "data": 1,
    "models": 2,
    "synthetic": 2,
    "training": 3,
    "serving": 4,
    "commands": 5,
    "cli": 5,
    "__main__": 5,
    "web": 5,
    "": 5,  # retinascreen/__init__.py: the public API, imported lazily
}
# Packages of one rank that must not import each other (each stands on the layers below).
SIDE_BY_SIDE = {2}
# Cycles known and left, each with why; a test fails when one is gone (drop it here then).
KNOWN_CYCLES: dict[str, str] = {}  # cycle -> why it is tolerated (none today)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "migrations" not in p.parts}


def resolve(module: str, known: dict[str, Path]) -> str:
    """The module an import names (a package's name is its ``__init__``)."""
    while module not in known and "." in module:
        module = module.rsplit(".", 1)[0]
    return module


def imports_of(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int, str]]:
    """(imported module, line, private name or "") for every retinascreen import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, int, str]] = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == ROOT:
                    found.append((resolve(alias.name, known), node.lineno, ""))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != ROOT:
                continue
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in known:  # ``from retinascreen.data import fundus``: a module
                    found.append((full, node.lineno, ""))
                    aliases[alias.asname or alias.name] = full
                    continue
                private = alias.name if _private(alias.name) else ""
                found.append((resolve(node.module, known), node.lineno, private))
    for node in ast.walk(tree):  # ``fundus._crop_square``: a private name through a module
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and _private(node.attr)
        ):
            found.append((aliases[node.value.id], node.lineno, node.attr))
    return [item for item in found if item[0] != name]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, int, str]]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_imports_point_down_the_layers(graph):
    upward = []
    for importer, imported in ((a, b) for a, edges in graph.items() for b, _, _ in edges):
        low, high = layer(imported), layer(importer)
        if low == high:
            continue
        below = RANKS[low] < RANKS[high]
        same_rank_allowed = RANKS[low] == RANKS[high] and RANKS[low] not in SIDE_BY_SIDE
        if not (below or same_rank_allowed):
            upward.append(f"{importer} -> {imported}")
    assert not upward, "imports that point up or sideways:\n  " + "\n  ".join(sorted(upward))


def test_no_private_names_across_modules(graph):
    private = [
        f"{importer}:{line} takes {name} from {imported}"
        for importer, edges in graph.items()
        for imported, line, name in edges
        if name
    ]
    assert not private, "private names used across modules:\n  " + "\n  ".join(sorted(private))


def find_cycles(graph: dict[str, list[tuple[str, int, str]]]) -> list[str]:
    """Every import cycle a depth-first walk meets, as ``a -> b -> a``."""
    edges = {name: sorted({b for b, _, _ in imports}) for name, imports in graph.items()}
    # A package's __init__ importing its own modules is how a package offers its API; only
    # cycles through other modules count.
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, []):
            if nxt.startswith(node + "."):
                continue  # a package importing its own module
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    return cycles


def test_no_import_cycles(graph):
    cycles = find_cycles(graph)
    new = [cycle for cycle in cycles if cycle not in KNOWN_CYCLES]
    assert not new, "import cycles:\n  " + "\n  ".join(new)
    gone = sorted(set(KNOWN_CYCLES) - set(cycles))
    assert not gone, (
        "known cycles that are gone (remove them from KNOWN_CYCLES):\n  " + "\n  ".join(gone)
    )


def test_the_check_sees_an_upward_import_and_a_cycle(tmp_path):
    """The checks themselves work: a planted upward import and cycle are both found."""
    known = {"retinascreen.data.a": tmp_path / "a.py", "retinascreen.serving.b": tmp_path / "b.py"}
    known["retinascreen.data.a"].write_text("from retinascreen.serving.b import thing\n")
    known["retinascreen.serving.b"].write_text("from retinascreen.data import a\nx = a._hidden\n")
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert graph["retinascreen.data.a"] == [("retinascreen.serving.b", 1, "")]
    assert ("retinascreen.data.a", 2, "_hidden") in graph["retinascreen.serving.b"]
    with pytest.raises(AssertionError, match="point up"):
        test_imports_point_down_the_layers(graph)
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycles(graph)
