"""The engine and the provider adapters stay plain async Python (see STYLE.md).

Every module under ``agents/engine``, ``agents/providers`` and (if present) ``agents/fakellm``
is parsed, and every import, including those inside functions, is checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.import_boundary import imported_modules, matches

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agents/engine", "agents/providers", "agents/fakellm")
# Web-framework layers no package here may touch.
FORBIDDEN_EVERYWHERE = ("rest_framework", "channels", "django.http")
# The engine must not know Django at all, and does no HTTP of its own: outbound calls (models,
# the HTTP tool) go through agents.providers, whose clients are pooled and SSRF-guarded.
FORBIDDEN_IN_ENGINE = ("django", "httpx", "httpcore")


def modules() -> list[Path]:
    found = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    return found


def test_there_is_something_to_check() -> None:
    files = modules()
    assert any("agents/engine" in str(p) for p in files)
    assert any("agents/providers" in str(p) for p in files)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_web_framework_imports(path: Path) -> None:
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    forbidden = FORBIDDEN_EVERYWHERE
    if module.startswith("agents.engine"):
        forbidden += FORBIDDEN_IN_ENGINE
    bad = sorted(
        name for name in imported_modules(tree, module) for f in forbidden if matches(name, f)
    )
    assert not bad, f"{module} imports {bad}"


def test_the_checker_sees_nested_and_aliased_imports() -> None:
    source = (
        "def f():\n"
        "    from django import http\n"
        "    import channels.layers as layers\n"
        "    importlib.import_module('rest_framework.views')\n"
    )
    names = imported_modules(ast.parse(source), "agents.engine.x")
    assert "django.http" in names
    assert "channels.layers" in names
    assert "rest_framework.views" in names
