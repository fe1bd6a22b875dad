"""Issue 20, group 3: every third-party module that ecgtransfer imports is a runtime dependency.

``pip install ecgtransfer`` installs ``[project] dependencies`` only; a module imported by the package (at module
level or inside a function, read with :mod:`ast`) that is declared only in an extra (``test``) or not at all fails
at run time (``train --model features`` ended in ``ModuleNotFoundError: sklearn``).
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "ecgtransfer"
#: import name -> distribution name, where they differ
DISTRIBUTION = {"sklearn": "scikit-learn", "yaml": "PyYAML", "PIL": "pillow", "cv2": "opencv-python",
                "skimage": "scikit-image", "dateutil": "python-dateutil", "pyedflib": "pyEDFlib",
                "attr": "attrs", "google": "protobuf"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    return _canonical(re.split(r"[\s<>=!~;\[(]", req.strip(), maxsplit=1)[0])


def imported_modules(source: str) -> set[str]:
    """Top-level modules of every absolute ``import`` / ``from ... import`` in ``source`` (function bodies too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def missing_dependencies(sources: dict[str, str], dependencies: list[str]) -> dict[str, list[str]]:
    """Third-party modules imported by ``sources`` (name -> text) whose distribution is not in ``dependencies``:
    ``{distribution: [files importing it]}``. The standard library and ecgtransfer itself are skipped."""
    declared = {_requirement_name(r) for r in dependencies}
    missing: dict[str, list[str]] = {}
    for name, text in sorted(sources.items()):
        for module in sorted(imported_modules(text)):
            if module in sys.stdlib_module_names or module in ("ecgtransfer", "__future__"):
                continue
            dist = DISTRIBUTION.get(module, module)
            if _canonical(dist) not in declared:
                missing.setdefault(dist, []).append(name)
    return missing


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_every_imported_third_party_module_is_a_runtime_dependency() -> None:
    sources = {str(p.relative_to(REPO)): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}
    missing = missing_dependencies(sources, _project()["dependencies"])
    assert not missing, ("imported by ecgtransfer but not in [project] dependencies: "
                         + "; ".join(f"{d} ({', '.join(files[:3])})" for d, files in missing.items()))


def test_the_checker_catches_a_function_level_import_declared_only_in_an_extra() -> None:
    planted = "import numpy\n\ndef fit():\n    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis\n"
    deps = ["numpy>=1.24", "torch>=2.4; python_version >= '3.10'"]
    assert missing_dependencies({"planted.py": planted}, deps) == {"scikit-learn": ["planted.py"]}
    assert missing_dependencies({"planted.py": planted}, deps + ["scikit_learn>=1.3"]) == {}
    assert missing_dependencies({"p.py": "import os, json\nfrom . import x\nimport ecgtransfer.store\n"}, []) == {}


def test_scikit_learn_is_a_range_not_a_pin() -> None:
    deps = [d for d in _project()["dependencies"] if _requirement_name(d) == "scikit-learn"]
    assert deps and "==" not in deps[0] and ">=" in deps[0]
