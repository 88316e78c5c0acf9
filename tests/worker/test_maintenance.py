"""The hourly maintenance job: expired idempotency records go, in every tenant."""

from __future__ import annotations

import datetime as dt

from asgiref.sync import async_to_sync
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import IdempotencyRecord
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
