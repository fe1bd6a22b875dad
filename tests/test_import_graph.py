"""The import graph of ``ecgtransfer.models`` (and ``training.schedules``) has no cycle, hidden imports included.

Read from the source with :mod:`ast`: every ``import`` a module can run, at module level or inside a function
(the local imports that used to hide resnet -> weights -> resnet and base -> tiers -> base), counts; imports under
``if TYPE_CHECKING:`` never run and do not. Importing ``a.b.c`` also runs the ``__init__`` of each package above it
that the importer is not itself inside, so those are edges too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ecgtransfer"
#: the modules that must lie on no import cycle
CHECKED = ("ecgtransfer.models", "ecgtransfer.training.schedules")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node that can run (``if TYPE_CHECKING:`` bodies left out)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _targets(name: str, path: Path, node: ast.AST, known: set[str]) -> set[str]:
    """The project modules an import node runs (the named module, or each named submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in known}
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    found = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if sub in known:
            found.add(sub)  # `from pkg import submodule`
        elif base in known:
            found.add(base)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it can import (with the package ``__init__``\\ s that come with them)."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        own = name.split(".")
        ancestors_of_importer = {".".join(own[:i]) for i in range(1, len(own) + 1)}
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            for target in _targets(name, path, node, known):
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # the target and the packages above it
                    mod = ".".join(parts[:i])
                    if mod in known and mod not in ancestors_of_importer and mod != name:
                        edges.add(mod)
        graph[name] = edges
    return graph


def cycles_through(graph: dict[str, set[str]], nodes: set[str]) -> list[list[str]]:
    """One shortest import cycle (``[a, ..., a]``) for each node of ``nodes`` that lies on one."""
    found = []
    for start in sorted(nodes):
        parent: dict[str, str] = {start: ""}
        todo = [start]
        cycle = None
        while todo and cycle is None:  # breadth-first; an edge back to start closes a cycle
            nxt = []
            for node in todo:
                for target in sorted(graph.get(node, ())):
                    if target == start:
                        path = [node]
                        while path[-1] != start:
                            path.append(parent[path[-1]])
                        cycle = path[::-1] + [start]
                        break
                    if target not in parent:
                        parent[target] = node
                        nxt.append(target)
                if cycle:
                    break
            todo = nxt
        if cycle:
            found.append(cycle)
    return found


def _checked(graph: dict[str, set[str]]) -> set[str]:
    return {m for m in graph if any(m == c or m.startswith(c + ".") for c in CHECKED)}


def test_the_graph_reads_hidden_imports():
    graph = import_graph()
    assert {"ecgtransfer.models.resnet", "ecgtransfer.models.tiers", "ecgtransfer.models.base",
            "ecgtransfer.models.weights", "ecgtransfer.training.schedules"} <= _checked(graph)
    # function-level imports are edges: build_model imports its builders inside the function
    assert {"ecgtransfer.models.resnet", "ecgtransfer.models.cnn1d"} <= graph["ecgtransfer.models.registry"]
    # importing a module of another package runs that package's __init__; one's own package is no edge
    assert {"ecgtransfer.models.registry", "ecgtransfer.models"} <= graph["ecgtransfer.training.engine"]
    assert "ecgtransfer.training" not in graph["ecgtransfer.training.engine"]
    assert "ecgtransfer.models" not in graph["ecgtransfer.models.tiers"]


def test_the_checker_finds_a_hidden_cycle(tmp_path):
    graph = {"p.a": {"p.b"}, "p.b": set(), "p.c": {"p.a"}}
    assert cycles_through(graph, {"p.a", "p.b", "p.c"}) == []
    graph["p.b"] = {"p.c"}
    assert cycles_through(graph, {"p.a"}) == [["p.a", "p.b", "p.c", "p.a"]]
    assert cycles_through({"p.a": {"p.a"}}, {"p.a"}) == [["p.a", "p.a"]]
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x.hidden\nelse:\n    import x.other\n"
                     "def f():\n    from x import y\n    import x.z\n")
    assert sorted(getattr(n, "module", None) or n.names[0].name for n in _imports(tree)) == [
        "typing", "x", "x.other", "x.z"]


@pytest.mark.parametrize("module", sorted(_checked(import_graph())))
def test_no_import_cycle(module):
    graph = import_graph()
    cycles = cycles_through(graph, {module})
    assert not cycles, f"{module} is on an import cycle: {' -> '.join(cycles[0])}"
