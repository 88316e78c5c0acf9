"""Running tenant queries outside an HTTP request.

Consumers, ``sync_to_async`` threads, background jobs, ``on_commit`` callbacks and MCP handlers
must never trust the connection's ambient schema: all sync-to-async work of a process shares one
thread and its connection, so whatever schema the last caller set is what the next one gets.
These helpers take the schema name and enter it *inside* the sync function that runs the
queries, every time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from channels.db import database_sync_to_async
from django_tenants.utils import schema_context

P = ParamSpec("P")
R = TypeVar("R")


class MissingTenant(ValueError):
    """Tenant work was asked for without a tenant schema: refused, never run in public."""


def require_tenant_schema(schema_name: str | None) -> str:
    if not schema_name or schema_name == "public":
        raise MissingTenant("a tenant schema name is required here")
    return schema_name


def run_in_schema(schema_name: str, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn`` with the connection's search path set to ``schema_name`` (sync code)."""
    with schema_context(require_tenant_schema(schema_name)):
        return fn(*args, **kwargs)


async def in_schema(schema_name: str, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run the sync ``fn`` on the database thread, inside ``schema_name`` (async code)."""
    require_tenant_schema(schema_name)
    return await database_sync_to_async(run_in_schema)(schema_name, fn, *args, **kwargs)
