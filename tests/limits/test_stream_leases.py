"""Stream leases (agents.core.streams) under concurrency: the cap check and the new lease are
one round trip under the tenant's lock, so simultaneous openers never exceed the cap."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.core.streams import STREAM_LIMIT, open_stream
from config.errors import LimitExceeded
from tenants.models import StreamLease
from tenants.plans import forget_limits
from tenants.principals import Principal


def principal_of(persona: Any, key: str) -> Principal:
    return Principal(
        kind="api_key",
        identifier=key,
        role="user",
        tenant_id=persona.tenant.pk,
        tenant_slug=persona.slug,
        schema_name=persona.schema,
        api_key_id=key,
    )


@pytest.fixture
def leases_cleaned(committed_personas: Any) -> Any:
    yield committed_personas
    with schema_context("public"):
        StreamLease.objects.all().delete()


def test_simultaneous_openers_never_exceed_the_tenant_cap(leases_cleaned, plan_on):
    alpha = leases_cleaned["alpha"]
    plan_on(alpha, max_streams_per_tenant=3)
    forget_limits()
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def opener(index: int) -> None:
        try:
            start.wait(10)
            async_to_sync(open_stream)(principal_of(alpha, f"key{index}"))
            outcomes.append("leased")
        except LimitExceeded as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=opener, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["leased"] * 3 + [STREAM_LIMIT] * 5
    with schema_context("public"):
        assert StreamLease.objects.filter(tenant_id=alpha.tenant.pk).count() == 3


def test_expired_leases_are_removed_and_not_counted(leases_cleaned, plan_on):
    alpha = leases_cleaned["alpha"]
    plan_on(alpha, max_streams_per_key=1)
    forget_limits()
    with schema_context("public"):
        StreamLease.objects.create(
            tenant_id=alpha.tenant.pk,
            holder="k1",
            expires_at=timezone.now() - dt.timedelta(seconds=1),
        )
    lease = async_to_sync(open_stream)(principal_of(alpha, "k1"))
    assert lease.id is not None
    with schema_context("public"):
        assert list(StreamLease.objects.values_list("id", flat=True)) == [uuid.UUID(lease.id)]
    with pytest.raises(LimitExceeded) as refused:
        async_to_sync(open_stream)(principal_of(alpha, "k1"))
    assert "per key" in refused.value.message
    # Another key of the same tenant is not held back by k1's stream.
    other = async_to_sync(open_stream)(principal_of(alpha, "k2"))
    assert other.id is not None
    async_to_sync(lease.close)()
    with schema_context("public"):
        assert not StreamLease.objects.filter(pk=lease.id).exists()
