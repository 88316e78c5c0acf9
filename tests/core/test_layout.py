"""The execution core's layout, stated as tests that walk the source: one module per
responsibility with public names only, no import cycle inside the core, and interfaces that go
through the core instead of driving the engine themselves."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agents", "tenants", "config")
# The only module that may start the engine: everything else goes through agents.core.
ENGINE_CALLERS = {"agents.core.run"}
ENGINE_ENTRY_POINTS = {"start_agent", "run_agent"}


def _modules() -> dict[str, ast.Module]:
    found: dict[str, ast.Module] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            name = name.removesuffix(".__init__")
            found[name] = ast.parse(path.read_text(), str(path))
    return found


def _imports(tree: ast.Module) -> list[tuple[str, list[str], bool]]:
    """(module, names, top level?) of every ``from x import y`` in the file."""
    top = {id(node) for node in tree.body}
    result = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            result.append((node.module, [a.name for a in node.names], id(node) in top))
    return result


def test_no_module_imports_another_modules_private_names() -> None:
    offenders = [
        f"{name} imports {module}.{imported}"
        for name, tree in _modules().items()
        for module, names, _ in _imports(tree)
        if module.split(".")[0] in PACKAGES
        for imported in names
        if imported.startswith("_") and not imported.startswith("__")
    ]
    assert offenders == []


def test_the_core_has_no_import_cycle() -> None:
    modules = _modules()
    core = {name for name in modules if name.startswith("agents.core.")}
    graph: dict[str, set[str]] = {name: set() for name in core}
    for name in core:
        for module, names, _ in _imports(modules[name]):
            targets = {module} | {f"{module}.{n}" for n in names}
            graph[name] |= {t for t in targets if t in core and t != name}

    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in done:
            return
        assert node not in visiting, " -> ".join([*visiting[visiting.index(node) :], node])
        visiting.append(node)
        for target in sorted(graph[node]):
            visit(target)
        visiting.pop()
        done.add(node)

    for name in sorted(core):
        visit(name)
    assert len(done) >= 12  # the walk saw the core's modules


def test_only_the_core_runs_the_engine() -> None:
    callers = {
        name
        for name, tree in _modules().items()
        for module, names, _ in _imports(tree)
        if module.startswith("agents.engine")
        and ENGINE_ENTRY_POINTS & set(names)
        and not name.startswith("agents.engine")
    }
    assert callers == ENGINE_CALLERS


def test_interfaces_do_not_write_executions_themselves() -> None:
    """Transports start, read and cancel runs through agents.core; none of them creates or
    updates Execution rows, or imports the core's internals (admission, claim, finish)."""
    interfaces = {
        name: tree
        for name, tree in _modules().items()
        if name
        in {
            "agents.api.executions",
            "agents.api.sse",
            "agents.consumers",
            "agents.admin_test_run",
            "agents.tasks",
            "agents.mcp.app",
            "agents.mcp.server",
            "agents.mcp.tools",
            "agents.mcp.resources",
            "agents.mcp.prompts",
        }
    }
    assert len(interfaces) == 10
    internal = {"agents.core.admission", "agents.core.finish", "agents.core.event_log"}
    for name, tree in interfaces.items():
        for module, _, _ in _imports(tree):
            assert module not in internal, f"{name} imports {module}"
        # Rows of executions are read through selectors and written by the core only.
        assert "Execution.objects" not in ast.unparse(tree), name
