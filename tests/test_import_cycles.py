"""The package's modules import one way: no cycle, counting imports made inside functions."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import magistral_kedro

PACKAGE = Path(magistral_kedro.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package is its ``__init__``)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` imports anywhere in its code. ``from a import
    b`` is an import of the module ``a.b`` when there is one, else of ``a``; the parent packages
    Python imports on the way are left out (a package may import its own submodules)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names = [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for dotted in names:
            imported = dotted
            while imported and imported not in modules:  # an attribute: its module
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                found.add(imported)
    return found


def import_graph() -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports."""
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_the_package_has_no_import_cycle():
    try:
        TopologicalSorter(import_graph()).prepare()
    except CycleError as error:
        # The sorter lists each module before the one that imports it: read it backwards.
        cycle = " -> ".join(reversed(error.args[1]))
        raise AssertionError(f"import cycle (each imports the next): {cycle}") from None


def test_the_graph_sees_relative_and_in_function_imports(tmp_path):
    module = tmp_path / "hooks.py"
    module.write_text(
        "from .tracking import flatten\n"
        "def rules():\n    from pkg.check import validate\n"
        "import pkg.training.engine\n"
    )
    modules = dict.fromkeys(["pkg", "pkg.check", "pkg.tracking", "pkg.training"], tmp_path)
    assert _imports("pkg.hooks", module, modules) == {"pkg.check", "pkg.tracking", "pkg.training"}
