"""Queries run outside a request land in the schema they name, never the ambient one."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import DatabaseError, connection, transaction
from django_tenants.utils import schema_context

from tenants.audit.models import AuditLog
from tenants.audit.services import audit_record
from tenants.context import MissingTenant, in_schema, run_in_schema


def close_thread_connection() -> None:
    connection.close()  # looked up on the calling thread, not on the test's


def _marker_actors() -> set[str]:
    return set(AuditLog.objects.filter(action="test.marker").values_list("actor", flat=True))


@pytest.fixture
def markers(personas, django_db_blocker):
    """One committed marker row per tenant (threads do not share the test's transaction)."""
    with django_db_blocker.unblock():
        for persona in personas.values():
            audit_record(
                schema_name=persona.schema, actor=f"marker:{persona.slug}", action="test.marker"
            )
    yield personas


@pytest.mark.django_db(transaction=False)
def test_run_in_schema_ignores_the_ambient_schema(markers):
    alpha, bravo = markers["alpha"], markers["bravo"]
    connection.set_tenant(bravo.tenant)  # the ambient schema a previous caller left behind
    assert run_in_schema(alpha.schema, _marker_actors) == {"marker:alpha"}
    connection.set_schema_to_public()


@pytest.mark.asyncio
async def test_concurrent_sync_to_async_calls_each_see_their_own_schema(markers, django_db_blocker):
    alpha, bravo = markers["alpha"], markers["bravo"]

    def leave_ambient(tenant: object) -> None:
        connection.set_tenant(tenant)

    async def read(persona: object, rounds: int) -> list[set[str]]:
        seen = []
        for _ in range(rounds):
            # Another coroutine sets the shared thread's connection to the *other* tenant in between.
            other = bravo if persona is alpha else alpha
            await sync_to_async(leave_ambient)(other.tenant)
            seen.append(await in_schema(persona.schema, _marker_actors))
        return seen

    with django_db_blocker.unblock():
        try:
            alpha_seen, bravo_seen = await asyncio.gather(read(alpha, 25), read(bravo, 25))
        finally:
            # The database thread's connection would otherwise outlive the test database.
            await sync_to_async(close_thread_connection)()
    assert all(seen == {"marker:alpha"} for seen in alpha_seen)
    assert all(seen == {"marker:bravo"} for seen in bravo_seen)


@pytest.mark.asyncio
async def test_work_without_a_tenant_is_refused():
    with pytest.raises(MissingTenant):
        await in_schema("public", _marker_actors)
    with pytest.raises(MissingTenant):
        run_in_schema("", _marker_actors)


def test_audit_log_is_append_only_in_the_database(alpha):
    entry = audit_record(schema_name=alpha.schema, actor="tests", action="test.append_only")
    with schema_context(alpha.schema):
        for change in (
            lambda: AuditLog.objects.filter(pk=entry.pk).update(action="tampered"),
            lambda: AuditLog.objects.filter(pk=entry.pk).delete(),
        ):
            with pytest.raises(DatabaseError), transaction.atomic():
                change()
        assert AuditLog.objects.get(pk=entry.pk).action == "test.append_only"


def test_audit_refuses_the_public_schema(db):
    with pytest.raises(ValueError):
        audit_record(schema_name="public", actor="tests", action="x")
