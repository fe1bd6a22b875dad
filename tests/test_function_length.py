"""The house rule on function length (issue 21): no function in the package runs over ``MAX_LINES`` lines (``def`` to
its last line, docstring included) unless a comment beside it says why: a ``# long:`` comment on the line above the
``def`` (or its first decorator), or on the ``def`` line itself."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ecgtransfer"
MAX_LINES = 60
REASON = "# long:"


def long_functions(source: str, max_lines: int = MAX_LINES) -> list[tuple[int, str, int]]:
    """``(line, name, length)`` of each function in ``source`` longer than ``max_lines`` with no ``# long:`` reason."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        length = node.end_lineno - node.lineno + 1
        if length <= max_lines:
            continue
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        beside = [lines[first - 2] if first >= 2 else "", lines[node.lineno - 1]]
        if not any(REASON in line for line in beside):
            found.append((node.lineno, node.name, length))
    return found


def test_the_checker_finds_a_long_function_and_accepts_one_with_its_reason() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    plain = f"def f():\n{body}\n"
    assert long_functions(plain) == [(1, "f", MAX_LINES + 1)]
    assert long_functions(f"{REASON} a numeric kernel read as one piece\n{plain}") == []
    assert long_functions(f"@staticmethod\ndef g():\n    return 1\n") == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_function_is_long_without_a_reason(path: Path) -> None:
    found = long_functions(path.read_text(encoding="utf-8"))
    assert not found, "; ".join(f"{path.name}:{line} {name} is {n} lines (> {MAX_LINES}): split it or say why "
                                f"in a '{REASON}' comment above it" for line, name, n in found)
