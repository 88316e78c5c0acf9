"""The Petri-net core stays plain Python (see STYLE.md).

Every module under ``workflow_bridge/net`` is parsed, and every import, including those inside
functions, is checked; a child process then imports the package and looks at what came along,
which also catches an import made by a parent package's ``__init__``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.import_boundary import imported_modules, matches

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "workflow_bridge" / "net"
# No web framework, no HTTP client, and nothing of the platform around it: the Django app in
# workflow_bridge calls this package, never the other way round.
FORBIDDEN = (
    "django",
    "rest_framework",
    "channels",
    "httpx",
    "httpcore",
    "agents",
    "tenants",
    "config",
)


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_there_is_something_to_check() -> None:
    names = {str(p.relative_to(PACKAGE)) for p in modules()}
    assert {"__init__.py", "model.py", "firing.py", "analysis.py", "rules/conditions.py"} <= names


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_framework_or_platform_imports(path: Path) -> None:
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = imported_modules(tree, module)
    bad = sorted(name for name in names for f in FORBIDDEN if matches(name, f))
    # The rest of workflow_bridge becomes a Django app; only this package is importable here.
    bad += sorted(
        name
        for name in names
        if matches(name, "workflow_bridge") and not matches(name, "workflow_bridge.net")
    )
    assert not bad, f"{module} imports {bad}"


def test_importing_the_package_loads_none_of_them() -> None:
    code = "import json, sys\nimport workflow_bridge.net\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    bad = sorted(name for name in loaded for f in FORBIDDEN if matches(name, f))
    assert not bad, f"importing workflow_bridge.net loads {bad}"


def test_the_checker_sees_nested_relative_and_aliased_imports() -> None:
    source = (
        "from .model import Net\n"
        "from ..models import Workflow\n"
        "def f():\n"
        "    from django import db\n"
        "    import agents.engine as engine\n"
        "    importlib.import_module('tenants.context')\n"
    )
    names = imported_modules(ast.parse(source), "workflow_bridge.net.firing")
    assert "workflow_bridge.net.model" in names
    assert "workflow_bridge.models" in names
    assert {"django.db", "agents.engine", "tenants.context"} <= names
    # In a package's __init__, "." is the package itself.
    init = imported_modules(ast.parse("from .model import Net"), "workflow_bridge.net.__init__")
    assert "workflow_bridge.net.model" in init
