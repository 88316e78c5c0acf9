"""Walking a module's imports, for the tests that keep pure cores pure (the agent engine and the
Petri-net core): plain, relative and ``import_module`` imports, also those inside functions."""

from __future__ import annotations

import ast


def imported_modules(tree: ast.AST, module: str) -> set[str]:
    """Absolute names of every module imported anywhere in ``tree`` (the source of ``module``)."""
    names: set[str] = set()
    package_parts = module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            # `from django import http` imports django.http.
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def matches(name: str, forbidden: str) -> bool:
    """``name`` is ``forbidden`` or one of its submodules."""
    return name == forbidden or name.startswith(forbidden + ".")
