"""The hourly maintenance job: expired idempotency records and stale MCP session subscriptions
go, in every tenant."""

from __future__ import annotations

import datetime as dt

from asgiref.sync import async_to_sync
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import IdempotencyRecord, McpSubscription
from agents.tasks import delete_old_jobs


def test_hourly_cleanup_purges_expired_idempotency_records_in_every_tenant(committed_personas):
    made = {}
    for slug, persona in committed_personas.items():
        with schema_context(persona.schema):
            old = IdempotencyRecord.objects.create(
                scope="s", key=f"old-{slug}", fingerprint="f", method="POST", path="/x"
            )
            fresh = IdempotencyRecord.objects.create(
                scope="s", key=f"fresh-{slug}", fingerprint="f", method="POST", path="/x"
            )
            IdempotencyRecord.objects.filter(pk=old.pk).update(
                created_at=timezone.now() - dt.timedelta(days=3)
            )
            made[slug] = (old.pk, fresh.pk)
    try:
        async_to_sync(delete_old_jobs.func)(0)  # the task's function, run here
        for slug, persona in committed_personas.items():
            with schema_context(persona.schema):
                remaining = set(IdempotencyRecord.objects.values_list("pk", flat=True))
            old_pk, fresh_pk = made[slug]
            assert old_pk not in remaining and fresh_pk in remaining
    finally:
        for persona in committed_personas.values():
            with schema_context(persona.schema):
                IdempotencyRecord.objects.all().delete()


def test_hourly_cleanup_purges_stale_mcp_subscriptions(committed_personas, settings):
    settings.MCP_SESSION_MAX_HOURS = 24
    alpha = committed_personas["alpha"]
    with schema_context(alpha.schema):
        old = McpSubscription.objects.create(session="s1", uri="execution://exec_old")
        fresh = McpSubscription.objects.create(session="s2", uri="execution://exec_new")
        McpSubscription.objects.filter(pk=old.pk).update(
            created_at=timezone.now() - dt.timedelta(hours=25)
        )
    try:
        async_to_sync(delete_old_jobs.func)(0)
        with schema_context(alpha.schema):
            assert list(McpSubscription.objects.values_list("pk", flat=True)) == [fresh.pk]
    finally:
        with schema_context(alpha.schema):
            McpSubscription.objects.all().delete()
