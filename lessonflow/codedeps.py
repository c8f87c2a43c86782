"""The project modules each stage runs, found by following its imports.

A stage's code deps are the closure of its entry module's imports plus the modules it loads by name
(its lesson's kind, its dataset), so an edit rebuilds exactly the stages that run it. Imports inside
functions count, except in a ``REGISTRY``, whose functions each import one key's module (a stage
runs only its own kind's, added as an entry). ``LAUNCH_ONLY`` modules decide *where* a stage runs,
never what it computes; ``USERS_ONLY`` ones (``lessonflow.load``) no stage runs at all.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lessonflow", "stages")
LAUNCH_ONLY = frozenset({"lessonflow/warm.py", "lessonflow/interpreter.py"})
REGISTRY = frozenset({"lessonflow/kinds/__init__.py"})
USERS_ONLY = frozenset({"lessonflow/__init__.py"})


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The project file of a dotted module name, or None for a module outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def imported_modules(path: Path) -> frozenset[str]:
    """Dotted names a file imports: ``from a.b import c`` is ``a.b.c`` when ``c`` is a module, else ``a.b``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    registry = path.as_posix().endswith(tuple(f"/{module}" for module in REGISTRY))
    statements = [node for node in tree.body if not (registry and isinstance(node, ast.FunctionDef))]
    names: set[str] = set()
    for node in (inner for statement in statements for inner in ast.walk(statement)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(names)


def with_packages(name: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first."""
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


def closure(entries: list[str], root: Path = ROOT) -> list[str]:
    """Sorted project-relative paths of every project module that importing ``entries`` runs."""
    seen: set[Path] = set()
    todo = [package for entry in entries for package in with_packages(entry)]
    while todo:
        path = module_file(todo.pop(), root)
        if path is None or path in seen or path.relative_to(root).as_posix() in USERS_ONLY:
            continue
        seen.add(path)
        for name in imported_modules(path):
            todo.extend(with_packages(name))
    relative = (path.relative_to(root).as_posix() for path in seen)
    return sorted(path for path in relative if path not in LAUNCH_ONLY)


def kind_module(kind: str) -> str:
    return f"lessonflow.kinds.{kind}"


def dataset_module(dataset: str) -> str:
    return f"lessonflow.datasets.{dataset.replace('-', '_')}"
