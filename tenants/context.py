"""Running tenant queries outside an HTTP request.

Consumers, ``sync_to_async`` threads, background jobs, ``on_commit`` callbacks and MCP handlers
must never trust the connection's ambient schema: all sync-to-async work of a process shares one
thread and its connection, so whatever schema the last caller set is what the next one gets.
These helpers take the schema name and enter it *inside* the sync function that runs the
queries, every time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection
from django_tenants.utils import schema_context

if TYPE_CHECKING:
    from django_tenants.postgresql_backend.base import DatabaseWrapper as TenantDatabaseWrapper

P = ParamSpec("P")
R = TypeVar("R")

# The same proxy as ``django.db.connection``, typed as what it is here: settings.DATABASES names
# django-tenants' backend, whose wrapper carries ``schema_name``, ``set_tenant`` and
# ``set_schema_to_public``. django-stubs can only know Django's base wrapper.
tenant_connection = cast("TenantDatabaseWrapper", connection)


class MissingTenant(ValueError):
    """Tenant work was asked for without a tenant schema: refused, never run in public."""


def require_tenant_schema(schema_name: str | None) -> str:
    if not schema_name or schema_name == "public":
        raise MissingTenant("a tenant schema name is required here")
    return schema_name


def run_in_schema(schema_name: str, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn`` with the connection's search path set to ``schema_name`` (sync code)."""
    require_tenant_schema(schema_name)
    if tenant_connection.schema_name == schema_name:
        # This very connection is already there (checked, not assumed): entering and leaving
        # schema_context would only cost two more `SET search_path`.
        return fn(*args, **kwargs)
    with schema_context(schema_name):
        return fn(*args, **kwargs)


@contextlib.contextmanager
def unscoped_cursor() -> Iterator[Any]:
    """A cursor for SQL whose every table and function is schema-qualified: it sets no
    search path. django-tenants sets one on the first cursor of every pooled checkout (a
    round trip) whatever the statement; hot statements that name their schema skip it.
    Errors are Django's, as from any cursor. Never for unqualified SQL: the search path is
    whatever the connection's last user left."""
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.cursor() as cursor:
        yield cursor


def _run_with_fresh_connection(
    schema_name: str, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> R:
    # Like channels' database_sync_to_async: drop connections that are broken or past
    # CONN_MAX_AGE around the call. Never inside an atomic block (a caller's transaction, or a
    # test's), where closing would throw that transaction away.
    if not connection.in_atomic_block:
        close_old_connections()
    try:
        return run_in_schema(schema_name, fn, *args, **kwargs)
    finally:
        if not connection.in_atomic_block:
            close_old_connections()


async def in_schema(
    schema_name: str, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> R:
    """Run the sync ``fn`` on the database thread, inside ``schema_name`` (async code).

    Called under ``async_to_sync`` from a sync thread, ``fn`` runs on that thread (asgiref's
    thread-sensitive mode), so it joins that thread's open transaction.
    """
    require_tenant_schema(schema_name)
    return await sync_to_async(_run_with_fresh_connection, thread_sensitive=True)(
        schema_name, fn, *args, **kwargs
    )
