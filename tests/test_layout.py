"""The tests' layout: shared helpers live in ``tests/support/``, and no test module (nor a
conftest) is imported by another module, so that each test module can change on its own."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = ("tests", "support")
#: Files pytest itself reads beside the tests; everything else shared belongs in tests/support/.
TEST_FILES = ("conftest.py", "__init__.py")


def _package(path: Path) -> list[str]:
    """The package ``path`` belongs to, as parts (``tests/grpo/x.py`` -> tests, grpo): what its
    relative imports start from (an ``__init__.py`` is its package's own module)."""
    return list(path.relative_to(ROOT).parts[:-1])


def _imports(tree: ast.AST, package: list[str]) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every import in ``tree``, at module level or inside a function,
    relative ones resolved against ``package``; ``from a import b`` gives ``a.b``. Code held in a
    string (a script a test runs with ``python -c``) counts too."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield from ((node.lineno, f"{module}.{alias.name}") for alias in node.names)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "import" in node.value
        ):
            try:
                script = ast.parse(node.value)
            except SyntaxError:
                continue  # prose, not code
            # A script runs as ``__main__``: its relative imports have no package.
            yield from ((node.lineno, name) for _, name in _imports(script, []))


def _python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def test_only_tests_support_is_imported_from_tests():
    wrong = []
    for path in _python_files("tests", "benchmarks"):
        package = _package(path)
        for line, name in _imports(ast.parse(path.read_text(), str(path)), package):
            parts = tuple(name.split("."))
            if parts[0] == "tests" and len(parts) > 1 and parts[:2] != SUPPORT:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not wrong, "move what is shared into tests/support/:\n" + "\n".join(wrong)


def test_helpers_live_in_tests_support():
    support = ROOT.joinpath(*SUPPORT)
    beside = [
        str(path.relative_to(ROOT))
        for path in _python_files("tests")
        if support not in path.parents
        and not path.name.startswith("test_")
        and path.name not in TEST_FILES
    ]
    assert not beside, f"helpers outside tests/support/: {beside}"


def test_the_import_check_sees_every_kind_of_import():
    """The parser behind the check above finds relative, in-function and scripted imports (a
    made-up package here, so that this module passes its own check)."""
    code = (
        "from . import conftest\n"
        "def f():\n    from lab.grpo.test_loop import run\n"
        "SCRIPT = 'import lab.e2e'\n"
    )
    found = {name for _, name in _imports(ast.parse(code), ["lab", "grpo"])}
    assert found == {"lab.grpo.conftest", "lab.grpo.test_loop.run", "lab.e2e"}
