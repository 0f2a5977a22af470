"""The libraries stay readable in pieces: no function over 80 lines, no module of 400 or more."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import magistral_kedro

PACKAGE = Path(magistral_kedro.__file__).resolve().parent
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 399


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def function_lengths(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """(qualified name, lines from ``def`` to its last line) of every function and method in
    ``tree``, nested ones included; decorators do not count."""

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                assert child.end_lineno is not None
                yield f"{prefix}{child.name}", child.end_lineno - child.lineno + 1
                yield from visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")
            else:
                yield from visit(child, prefix)

    return visit(tree, "")


def test_no_library_function_is_over_80_lines():
    long = [
        f"{_name(path)}::{name} ({lines} lines)"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name, lines in function_lengths(ast.parse(path.read_text(), str(path)))
        if lines > MAX_FUNCTION_LINES
    ]
    assert not long, "split into named helpers: " + ", ".join(long)


def test_no_library_module_reaches_400_lines():
    long = [
        f"{_name(path)} ({lines} lines)"
        for path in sorted(PACKAGE.rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, "split by responsibility: " + ", ".join(long)


def test_lengths_count_nested_functions_and_methods():
    code = "class A:\n    def f(self):\n        def g():\n            pass\n        return g\n"
    assert dict(function_lengths(ast.parse(code))) == {"A.f": 4, "A.f.g": 2}
