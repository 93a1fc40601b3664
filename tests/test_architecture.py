"""The package's structure: no import circles, lazy imports only where they pay, layers respected,
a test file per module.

The import graph is read statically (``ast``) from ``src/clipdenoise``, so these checks need no
optional dependency and see imports hidden inside functions too. Imports under
``if TYPE_CHECKING:`` are type hints only and ignored.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from clipdenoise.extras import EXTRA_OF_MODULE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "clipdenoise"
TESTS = ROOT / "tests"

# Function-level imports of the package's own modules that are NOT explained by an optional
# dependency of the imported module, each as (importer, imported) -> the reason it is lazy.
# A lazy import of a module that needs an optional package at import time (transitively) is
# always allowed and need not be listed: that is the point of making it lazy.
LAZY_IN_PACKAGE_ALLOWED: dict[tuple[str, str], str] = {}

# The layers of docs/DESIGN.md: a module imports only from its own layer or lower ones.
LAYERS: dict[str, int] = {
    **dict.fromkeys(["clipdenoise", "errors", "atomic", "extras", "config", "devices"], 0),
    **dict.fromkeys(
        ["encoder", "decoder", "model", "networks", "builtin", "checkpoints", "weights"], 1
    ),
    **dict.fromkeys(["download", "acceleration", "inference", "baselines"], 1),
    **dict.fromkeys(["noise", "isp", "ct", "image_io", "metrics"], 2),
    **dict.fromkeys(["data", "training", "evaluation"], 3),
    **dict.fromkeys(["file_denoising", "srgb_synthesis", "export", "analysis"], 4),
    **dict.fromkeys(["cli", "web", "__main__"], 5),
}
# Within layer 3, ``training`` and ``evaluation`` may use ``data`` but never each other.
SEPARATE_WINGS = {("training", "evaluation"), ("evaluation", "training")}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a module of the package, or a third-party top-level package name
    module_level: bool  # runs when the importer is imported (not inside a function)
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known_prefix(name: str, known: set[str]) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


class _ImportCollector(ast.NodeVisitor):
    """Every import of a file, noting whether it runs at import time (outside any function)."""

    def __init__(self, module: str, is_package: bool, known: set[str]):
        self.module, self.is_package, self.known = module, is_package, known
        self.depth = 0
        self.found: list[Import] = []

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self._add([alias.name for alias in node.names], node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _absolute(self.module, node, self.is_package)
        self._add([f"{base}.{alias.name}" for alias in node.names], node)

    def _add(self, names: list[str], node: ast.stmt) -> None:
        targets = dict.fromkeys(
            _known_prefix(name, self.known) or name.split(".")[0] for name in names
        )
        for target in targets:
            if target != self.module:
                self.found.append(Import(self.module, target, self.depth == 0, node.lineno))


@cache
def all_imports() -> tuple[Import, ...]:
    modules = package_modules()
    found: list[Import] = []
    for name, path in modules.items():
        collector = _ImportCollector(name, path.name == "__init__.py", set(modules))
        collector.visit(ast.parse(path.read_text(encoding="utf-8")))
        found.extend(collector.found)
    return tuple(found)


def in_package_imports() -> list[Import]:
    modules = package_modules()
    return [imp for imp in all_imports() if imp.target in modules]


def import_graph(module_level_only: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in package_modules()}
    for imp in in_package_imports():
        if imp.module_level or not module_level_only:
            graph[imp.importer].add(imp.target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; returns the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@cache
def optional_packages() -> frozenset[str]:
    """The heavy optional packages: ruff's banned module-level imports (TID253)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    tidy = pyproject["tool"]["ruff"]["lint"]["flake8-tidy-imports"]
    return frozenset(tidy["banned-module-level-imports"])


def needs_optional_at_import(module: str) -> bool:
    """Whether importing ``module`` imports an optional package (through its own module-level
    imports, those of the package modules it imports at module level, or its parent packages)."""
    modules = package_modules()
    module_level: dict[str, set[str]] = {name: set() for name in modules}
    for imp in all_imports():
        if imp.module_level:
            module_level[imp.importer].add(imp.target)
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if module_level[name] & optional_packages():
            return True
        parent = name.rpartition(".")[0]
        todo.extend(t for t in module_level[name] | {parent} if t in modules)
    return False


def test_no_import_circles_counting_lazy_imports():
    assert strongly_connected(import_graph(module_level_only=False)) == []


def test_lazy_in_package_imports_are_the_listed_few():
    unexplained = {
        (imp.importer, imp.target): imp.line
        for imp in in_package_imports()
        if not imp.module_level and not needs_optional_at_import(imp.target)
    }
    assert set(unexplained) == set(LAZY_IN_PACKAGE_ALLOWED), (
        "import these at module level, or list why they stay lazy: "
        f"{sorted(set(unexplained) - set(LAZY_IN_PACKAGE_ALLOWED))}"
    )
    assert all(reason.strip() for reason in LAZY_IN_PACKAGE_ALLOWED.values())


def test_optional_packages_are_never_imported_at_module_level_outside_their_features():
    """The ban of pyproject.toml covers every extra that the core dependencies do not install."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower() for req in requirements}

    core = names(project["dependencies"])
    optional = {
        module
        for module, extra in EXTRA_OF_MODULE.items()
        if not names(project["optional-dependencies"][extra]) <= core
    }
    assert optional <= optional_packages()


def _layer_key(module: str) -> str:
    """The top-level module or wing a module belongs to (``clipdenoise`` for the package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer(module: str) -> int:
    return LAYERS[_layer_key(module)]


def test_every_module_has_a_layer():
    assert [m for m in package_modules() if _layer_key(m) not in LAYERS] == []


def test_no_module_imports_from_a_higher_layer_even_lazily():
    upward = [
        f"{imp.importer}:{imp.line} -> {imp.target}"
        for imp in in_package_imports()
        if layer(imp.target) > layer(imp.importer)
        or (_layer_key(imp.importer), _layer_key(imp.target)) in SEPARATE_WINGS
    ]
    assert upward == []


def public_modules() -> list[str]:
    names = []
    for name, path in package_modules().items():
        parts = name.split(".")[1:]
        if not parts or path.name in ("__init__.py", "__main__.py"):
            continue
        if any(part.startswith("_") for part in parts):
            continue
        names.append(name)
    return names


@pytest.mark.parametrize("module", public_modules())
def test_every_public_module_has_its_test_file(module):
    expected = TESTS / ("test_" + "_".join(module.split(".")[1:]) + ".py")
    assert expected.is_file(), f"{module} has no {expected.name}"
