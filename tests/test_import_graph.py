"""The import graph of ``ecgtransfer`` keeps its layers: no upward import, no cycle, no private name across packages.

Read from the source with :mod:`ast`: every ``import`` a module can run, at module level or inside a function
(the local imports that used to hide resnet -> weights -> resnet and base -> tiers -> base), counts; imports under
``if TYPE_CHECKING:`` never run and do not. Importing ``a.b.c`` also runs the ``__init__`` of each package above it
that the importer is not itself inside, so those are edges too.

The rules (the layers are data, :data:`ecgtransfer._layers.LAYERS`, drawn in ``docs/architecture.md``):

- a module imports only from its own layer or the layers below (:func:`upward_imports`), apart from
  :data:`ALLOWED_UPWARD`, where each exception states its reason;
- no module of the package lies on an import cycle (:func:`cycles_through`);
- a ``_private`` name (a module or an attribute) is imported only from inside its own package
  (:func:`private_imports`): ``ecgtransfer.imaging._tensor`` is imaging's own; the top-level shared helpers
  (``ecgtransfer._atomic``, ``ecgtransfer._outdir``, ...) are public modules to everyone, but their ``_private``
  names are not.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Iterator, Mapping

import pytest

from ecgtransfer._layers import LAYERS, layer_of

PACKAGE = Path(__file__).resolve().parent.parent / "ecgtransfer"
DOC = PACKAGE.parent / "docs" / "architecture.md"

#: (importer, imported module) -> why this upward import is tolerated. Empty: every known one was moved.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}

#: Source = (text, whether the module is a package ``__init__``), by dotted module name.
Sources = Mapping[str, "tuple[str, bool]"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@functools.lru_cache(maxsize=1)
def package_sources() -> dict[str, tuple[str, bool]]:
    return {name: (path.read_text(encoding="utf-8"), path.name == "__init__.py") for name, path in _modules().items()}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, *, type_only: bool = False):
    """Every Import / ImportFrom node that can run (``if TYPE_CHECKING:`` bodies left out, unless ``type_only``:
    then those too, the imports a type checker follows)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test) and not type_only:
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _from_base(name: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from (relative imports resolved)."""
    package = name if is_package else name.rpartition(".")[0]
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    return base


def _targets(name: str, is_package: bool, node: ast.AST, known: set[str]) -> set[str]:
    """The project modules an import node runs (the named module, or each named submodule)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in known}
    base = _from_base(name, is_package, node)
    found = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if sub in known:
            found.add(sub)  # `from pkg import submodule`
        elif base in known:
            found.add(base)
    return found


def graph_of(sources: Sources, *, type_only: bool = False) -> dict[str, set[str]]:
    """module -> the modules of ``sources`` it can import (with the package ``__init__``\\ s that come with them);
    ``type_only``: with the imports under ``if TYPE_CHECKING:`` too."""
    known = set(sources)
    graph: dict[str, set[str]] = {}
    for name, (text, is_package) in sources.items():
        own = name.split(".")
        ancestors_of_importer = {".".join(own[:i]) for i in range(1, len(own) + 1)}
        edges: set[str] = set()
        for node in _imports(ast.parse(text, filename=name), type_only=type_only):
            for target in _targets(name, is_package, node, known):
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # the target and the packages above it
                    mod = ".".join(parts[:i])
                    if mod in known and mod not in ancestors_of_importer and mod != name:
                        edges.add(mod)
        graph[name] = edges
    return graph


@functools.lru_cache(maxsize=1)
def _package_graph() -> dict[str, frozenset[str]]:
    return {k: frozenset(v) for k, v in graph_of(package_sources()).items()}


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it can import (with the package ``__init__``\\ s that come with them)."""
    return {k: set(v) for k, v in _package_graph().items()}


def cycles_through(graph: Mapping[str, set[str]], nodes: set[str]) -> list[list[str]]:
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


def upward_imports(graph: Mapping[str, set[str]], layers=LAYERS) -> list[str]:
    """``"importer (layer) -> imported (higher layer)"`` for every edge that goes up the layers."""
    found = []
    for importer in sorted(graph):
        low = layer_of(importer, layers)
        for target in sorted(graph[importer]):
            high = layer_of(target, layers)
            if low is not None and high is not None and high > low:
                found.append(f"{importer} ({layers[low][0]}) -> {target} ({layers[high][0]})")
    return found


def _unit(dotted: str) -> str:
    """The package a dotted name belongs to for privacy: ``ecgtransfer.X`` (a subpackage or a top-level module)."""
    return ".".join(dotted.split(".")[:2])


def _imported_paths(name: str, is_package: bool, tree: ast.AST) -> Iterator[tuple[str, int]]:
    """``(dotted path, line)`` of everything an import node names: ``import a.b`` -> ``a.b``,
    ``from a.b import c`` -> ``a.b.c`` (relative imports resolved)."""
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        else:
            base = _from_base(name, is_package, node)
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def private_imports(sources: Sources, root: str = "ecgtransfer") -> list[str]:
    """``"importer:line imports dotted"`` for each ``_private`` module or name imported from another package.

    The package of ``ecgtransfer.X.y`` is ``ecgtransfer.X``; a top-level module ``ecgtransfer._atomic`` is its own
    package, so its name is public to every importer while its ``_private`` names are not."""
    found = []
    for name, (text, is_package) in sorted(sources.items()):
        for dotted, line in _imported_paths(name, is_package, ast.parse(text, filename=name)):
            parts = dotted.split(".")
            if parts[0] != root or len(parts) < 3 or _unit(dotted) == _unit(name):
                continue
            if any(_is_private(p) for p in parts[2:]):
                found.append(f"{name}:{line} imports {dotted}")
    return found


# -- the checkers themselves ----------------------------------------------------------------------------------

def test_the_graph_reads_hidden_imports():
    graph = import_graph()
    assert {"ecgtransfer.models.resnet", "ecgtransfer.models.tiers", "ecgtransfer.models.base",
            "ecgtransfer.models.weights", "ecgtransfer.training.schedules"} <= set(graph)
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


#: a small fake package with the real layers: signals below training below bench
_FAKE = {
    "ecgtransfer": ("", True),
    "ecgtransfer._atomic": ("def fsync_dir(p): pass\ndef _helper(p): pass\n", False),
    "ecgtransfer.signals": ("", True),
    "ecgtransfer.signals.beats": ("from ecgtransfer._atomic import fsync_dir\n", False),
    "ecgtransfer.imaging": ("from ecgtransfer.imaging._tensor import check_finite\n", True),
    "ecgtransfer.imaging._tensor": ("def check_finite(x): pass\n", False),
    "ecgtransfer.imaging.encode": ("from ._tensor import check_finite\nfrom ecgtransfer import __version__\n", False),
    "ecgtransfer.training": ("", True),
    "ecgtransfer.training.engine": ("from ecgtransfer.imaging import check_finite\n"
                                    "from ecgtransfer.signals.beats import fsync_dir\n", False),
    "ecgtransfer.bench": ("", True),
    "ecgtransfer.bench.report": ("def _Doc(): pass\n", False),
}


def _plant(module: str, line: str) -> dict[str, tuple[str, bool]]:
    fake = dict(_FAKE)
    text, is_package = fake[module]
    fake[module] = (text + line, is_package)
    return fake


def test_the_checker_passes_the_clean_fake_package():
    graph = graph_of(_FAKE)
    assert graph["ecgtransfer.training.engine"] == {"ecgtransfer.imaging", "ecgtransfer.signals",
                                                    "ecgtransfer.signals.beats"}
    assert upward_imports(graph) == []
    assert cycles_through(graph, set(graph)) == []
    assert private_imports(_FAKE) == []  # _tensor inside imaging, public re-export, public name of a helper


@pytest.mark.parametrize("module, line", [
    ("ecgtransfer.signals.beats", "from ecgtransfer.training.engine import x\n"),
    ("ecgtransfer.signals.beats", "def f():\n    import ecgtransfer.bench.report\n"),  # hidden in a function
    ("ecgtransfer.training.engine", "from ecgtransfer.bench import report\n"),
    ("ecgtransfer._atomic", "from .signals import beats\n"),  # the bottom layer reaching up, relatively
])
def test_the_checker_fails_on_a_planted_upward_import(module, line):
    found = upward_imports(graph_of(_plant(module, line)))
    assert len(found) >= 1 and all(f.startswith(module + " (") for f in found), found


def test_an_upward_import_only_for_type_checking_is_none():
    fake = _plant("ecgtransfer.signals.beats", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                               "    from ecgtransfer.training.engine import x\n")
    assert upward_imports(graph_of(fake)) == []


@pytest.mark.parametrize("module, line, dotted", [
    ("ecgtransfer.training.engine", "from ecgtransfer.imaging._tensor import check_finite\n",
     "ecgtransfer.imaging._tensor.check_finite"),
    ("ecgtransfer.training.engine", "def f():\n    from ecgtransfer.bench.report import _Doc\n",
     "ecgtransfer.bench.report._Doc"),
    ("ecgtransfer.training.engine", "import ecgtransfer.imaging._tensor\n", "ecgtransfer.imaging._tensor"),
    ("ecgtransfer.training.engine", "from ecgtransfer.imaging import _tensor\n", "ecgtransfer.imaging._tensor"),
    ("ecgtransfer.signals.beats", "from ecgtransfer._atomic import _helper\n", "ecgtransfer._atomic._helper"),
])
def test_the_checker_fails_on_a_planted_cross_package_private_import(module, line, dotted):
    found = private_imports(_plant(module, line))
    assert len(found) == 1 and found[0].startswith(f"{module}:") and found[0].endswith(f" imports {dotted}"), found


def test_the_checker_finds_a_planted_cycle():
    fake = _plant("ecgtransfer.imaging._tensor", "from ecgtransfer.imaging.encode import x\n")
    graph = graph_of(fake)
    assert cycles_through(graph, {"ecgtransfer.imaging._tensor"}) == [
        ["ecgtransfer.imaging._tensor", "ecgtransfer.imaging.encode", "ecgtransfer.imaging._tensor"]]


# -- the package ----------------------------------------------------------------------------------------------

def test_every_module_has_a_layer_and_the_doc_draws_them():
    assert [m for m in import_graph() if layer_of(m) is None] == []
    members = [m for _, ms in LAYERS for m in ms]
    assert len(members) == len(set(members))
    text = DOC.read_text(encoding="utf-8")
    assert "ecgtransfer/_layers.py" in text
    positions = [text.find(f"[{name}]") for name, _ in LAYERS]  # the diagram names each layer as [name]
    assert -1 not in positions, [name for (name, _), p in zip(LAYERS, positions) if p == -1]
    assert positions == sorted(positions, reverse=True), "the diagram draws the layers bottom (last) to top (first)"


def test_no_upward_import():
    graph = import_graph()
    found = [f for f in upward_imports(graph)
             if not any(f.startswith(f"{a} (") and f" -> {b} (" in f for a, b in ALLOWED_UPWARD)]
    assert found == [], "imports from a higher layer into a lower one:\n" + "\n".join(found)


def test_the_allow_list_holds_only_imports_that_exist():
    graph = import_graph()
    stale = [pair for pair in ALLOWED_UPWARD if pair[1] not in graph.get(pair[0], set())]
    assert stale == []


def test_no_private_name_crosses_a_package():
    found = private_imports(package_sources())
    assert found == [], "private names imported from another package:\n" + "\n".join(found)


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_import_cycle(module):
    cycles = cycles_through(_package_graph(), {module})
    assert not cycles, f"{module} is on an import cycle: {' -> '.join(cycles[0])}"


def test_no_import_cycle_even_through_type_only_imports():
    """A circle that only ``if TYPE_CHECKING:`` imports close runs nothing, but it is still two modules that need each
    other (and one refactor away from a real cycle): none in the package. The checker sees one planted."""
    graph = graph_of(package_sources(), type_only=True)
    cycles = cycles_through(graph, set(graph))
    assert not cycles, "; ".join(" -> ".join(c) for c in cycles[:3])
    fake = _plant("ecgtransfer.imaging._tensor", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                  "    from ecgtransfer.imaging.encode import x\n")
    assert cycles_through(graph_of(fake), {"ecgtransfer.imaging._tensor"}) == []
    assert cycles_through(graph_of(fake, type_only=True), {"ecgtransfer.imaging._tensor"}) == [
        ["ecgtransfer.imaging._tensor", "ecgtransfer.imaging.encode", "ecgtransfer.imaging._tensor"]]


def test_no_private_name_is_imported_from_another_module():
    """A name with a leading underscore is its module's own: what a sibling needs is public (``run_records.utc_now``,
    ``records.read_headers``), even inside one package (the splits of issue 21 first shared ``_now`` and ``_stale``).
    Private *modules* (``ecgtransfer._atomic``, ``imaging._tensor``) may still be imported by their public names."""
    found = []
    for name, (text, is_package) in package_sources().items():
        for node in _imports(ast.parse(text, filename=name), type_only=True):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = _from_base(name, is_package, node)
            if not base.startswith("ecgtransfer"):
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and f"{base}.{alias.name}" not in package_sources():
                    found.append(f"{name} imports {alias.name} from {base}")
    assert found == []
