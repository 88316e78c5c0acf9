"""Open streams counted against a tenant's plan (``max_streams_per_tenant``, ``_per_key``).

A streaming transport (SSE, WebSocket) takes a lease before it starts streaming and gives it
back when the stream ends: :func:`open_stream` / :meth:`StreamLease.close`, or
:func:`leased` around an SSE body. Leases are rows in the public schema, so every process
counts the same streams; the process serving a stream renews its leases every third of
``STREAM_LEASE_SECONDS``, and the leases of a process that died simply expire. A tenant
whose plan caps nothing takes no lease at all (no statement).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from config.errors import LimitExceeded
from config.metrics import OPEN_STREAMS
from tenants.channels import in_public
from tenants.context import unscoped_cursor
from tenants.models import StreamLease as LeaseRow
from tenants.plans import limits_for
from tenants.principals import Principal

logger = logging.getLogger(__name__)

STREAM_LIMIT = "stream_limit_exceeded"

_live: set[str] = set()
_renewers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


@dataclass
class StreamLease:
    id: str | None  # None: the plan caps nothing, nothing was taken
    open: bool = True  # still counted in the open-streams metric

    async def close(self) -> None:
        if self.open:
            self.open = False
            OPEN_STREAMS.dec()
        if self.id is None:
            return
        lease_id, self.id = self.id, None
        _live.discard(lease_id)
        await in_public(_release, lease_id)


# Schema-qualified: taking and giving back a lease sets no search path
# (tenants.context.unscoped_cursor).
_TABLE = f"public.{connection.ops.quote_name(LeaseRow._meta.db_table)}"


def _release(lease_id: str) -> None:
    # One statement (a queryset delete would first select what it deletes: no cascades here).
    with unscoped_cursor() as cursor:
        cursor.execute(f"DELETE FROM {_TABLE} WHERE id = %s", [lease_id])  # noqa: S608


# The cap check and the new lease in one round trip. The two statements of one message run in
# one (implicit) transaction, so the tenant's lock holds until the lease is in; in READ
# COMMITTED the second statement's snapshot is taken after the lock is granted, so it counts
# every lease committed before. Expired leases are removed and not counted.
_ACQUIRE_SQL = f"""
SELECT pg_advisory_xact_lock(hashtextextended(%(lock)s, 0));
WITH expired AS (
    DELETE FROM {_TABLE} WHERE tenant_id = %(tenant)s AND expires_at < %(now)s
), open AS (
    SELECT count(*) AS tenant_n, count(*) FILTER (WHERE holder = %(holder)s) AS key_n
      FROM {_TABLE} WHERE tenant_id = %(tenant)s AND expires_at >= %(now)s
), taken AS (
    INSERT INTO {_TABLE} (id, tenant_id, holder, expires_at)
    SELECT %(id)s, %(tenant)s, %(holder)s, %(until)s FROM open
     WHERE (%(per_tenant)s::integer IS NULL OR open.tenant_n < %(per_tenant)s::integer)
       AND (%(per_key)s::integer IS NULL OR open.key_n < %(per_key)s::integer)
    RETURNING id
)
SELECT open.tenant_n, (SELECT count(*) FROM taken) FROM open
"""  # noqa: S608  (the table name comes from the model; values are parameters)


def _acquire(principal: Principal) -> str | None:
    limits = limits_for(principal.schema_name)
    per_tenant, per_key = limits.max_streams_per_tenant, limits.max_streams_per_key
    if per_tenant is None and per_key is None:
        return None
    holder = (principal.api_key_id or principal.audit_actor)[:200]
    now = timezone.now()
    lease_id = uuid.uuid4()
    params: dict[str, Any] = {
        "lock": f"cba:streams:{principal.tenant_id}",
        "tenant": principal.tenant_id,
        "holder": holder,
        "now": now,
        "id": lease_id,
        "until": now + dt.timedelta(seconds=settings.STREAM_LEASE_SECONDS),
        "per_tenant": per_tenant,
        "per_key": per_key,
    }
    with unscoped_cursor() as cursor:
        cursor.execute(_ACQUIRE_SQL, params)
        cursor.nextset()
        tenant_n, taken = cursor.fetchone()
    if taken:
        return str(lease_id)
    if per_tenant is not None and tenant_n >= per_tenant:
        raise LimitExceeded(
            STREAM_LIMIT,
            f"the tenant already has {per_tenant} open streams (its plan's maximum)",
            retry_after=5,
        )
    raise LimitExceeded(
        STREAM_LIMIT,
        f"this API key already has {per_key} open streams (the plan's maximum per key)",
        retry_after=5,
    )


def _renew(ids: list[str]) -> None:
    until = timezone.now() + dt.timedelta(seconds=settings.STREAM_LEASE_SECONDS)
    LeaseRow.objects.filter(pk__in=ids).update(expires_at=until)


async def _renew_loop() -> None:
    while True:
        await asyncio.sleep(settings.STREAM_LEASE_SECONDS / 3)
        if _live:
            try:
                await in_public(_renew, list(_live))
            except Exception:  # the database is away: the next round tries again
                logger.warning("could not renew %d stream leases", len(_live), exc_info=True)


def _ensure_renewer() -> None:
    loop = asyncio.get_running_loop()
    task = _renewers.get(loop)
    if task is None or task.done():
        _renewers[loop] = loop.create_task(_renew_loop(), name="stream-lease-renewer")


async def open_stream(principal: Principal) -> StreamLease:
    """A lease for one stream of ``principal``, or ``LimitExceeded`` (429 ``stream_limit_
    exceeded``) when the plan's open-stream cap is reached."""
    lease_id = await in_public(_acquire, principal)
    if lease_id is not None:
        _live.add(lease_id)
        _ensure_renewer()
    OPEN_STREAMS.inc()
    return StreamLease(lease_id)


async def leased(body: AsyncIterator[bytes], lease: StreamLease) -> AsyncIterator[bytes]:
    """``body``, giving the lease back however the stream ends (client gone included)."""
    try:
        async for chunk in body:
            yield chunk
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(lease.close())
