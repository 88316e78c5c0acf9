"""Workflow events on NATS JetStream (only while ``NATS_URL`` is set): an outbox in the tenant
schema, drained by the workers.

**Writing.** :func:`outbox_write` runs in the transaction that records the event (from
``workflow_bridge.events.recorded``): one :class:`~workflow_bridge.models.EventOutbox` row per
message, so an event is queued for NATS if and only if it was committed. After COMMIT a
publish job for the tenant is deferred (:func:`publish_after_commit`); a periodic sweep
(``NATS_SWEEP_SECONDS``) defers one for every tenant that still has messages waiting, so a
lost job or a NATS outage only delays them.

**Publishing.** :func:`publish_pending` (the job, one at a time per tenant: procrastinate's
``lock``) sends the tenant's waiting rows in order, one at a time, each with its
``Nats-Msg-Id`` header, and marks a row published once JetStream acknowledged it. A crash or a
lost acknowledgement between the two sends the message again, and JetStream drops the repeat
(same ``Nats-Msg-Id`` within the streams' ``NATS_DUPLICATE_WINDOW_SECONDS``): at least once on
the wire, once in the stream. While NATS is unreachable a worker tries again after 1 s, then
twice as long each time (up to ``NATS_RETRY_MAX_SECONDS``) and meanwhile its publish jobs end
at once: nothing else waits for NATS. A message JetStream refuses for itself (too large, say)
is retried a few times, then set aside (``last_error``, never published) so it cannot hold up
the rest.

**Subjects.** ``cb.workflows.{workflow_slug}.events.lifecycle`` (``resource_created``),
``….events.activities`` (activity events), ``….events.agents`` (agent and cascade events), and
``cb.agent.execute.{tenant_slug}.{agent_slug}`` when the bridge started an agent run
(``agent_triggered``; an announcement of the run, which our own queue runs: not a request to
run it again). Tokens are sanitised: NATS subject tokens cannot hold ``.``, ``*``, ``>`` or
whitespace. The streams ``CB_WORKFLOWS`` (``cb.workflows.>``) and ``CB_AGENTS``
(``cb.agent.>``) are created when missing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from procrastinate.exceptions import AlreadyEnqueued

from agents.core import queue
from tenants.context import in_schema, run_in_schema
from tenants.models import Tenant
from workflow_bridge.models import EventOutbox

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.client import JetStreamContext

    from workflow_bridge.events import WorkflowEvent

logger = logging.getLogger(__name__)

PUBLISH_TASK = "workflow_bridge.publish_events"
SWEEP_TASK = "workflow_bridge.nats_sweep"
# Publish jobs share the bridge's queue (short jobs, ahead of the runs); the sweep runs with
# the other maintenance jobs.
PUBLISH_QUEUE = queue.EXECUTIONS_QUEUE
SWEEP_QUEUE = queue.MAINTENANCE_QUEUE
# (stream name, its subjects): created when missing.
STREAMS = (("CB_WORKFLOWS", "cb.workflows.>"), ("CB_AGENTS", "cb.agent.>"))
# Rows read per query while publishing.
BATCH = 100
# A message JetStream keeps refusing for itself is set aside after this many tries.
MAX_ATTEMPTS = 5
# NATS's default max_payload is 1 MiB: a larger message is sent without its data.
MAX_PAYLOAD_BYTES = 900_000

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
ACTIVITY_TYPES = frozenset(
    {"resource_activity_executed", "activity_pending", "activity_failed", "auto_activity_refused"}
)


def subject_token(value: str) -> str:
    """One subject token: anything but letters, digits, ``-`` and ``_`` becomes ``_``."""
    return _UNSAFE.sub("_", value) or "_"


def workflow_subject(workflow_slug: str, event_type: str) -> str:
    if event_type == "resource_created":
        group = "lifecycle"
    elif event_type in ACTIVITY_TYPES:
        group = "activities"
    else:  # agent_*, cascade_stopped, and any kind added later
        group = "agents" if event_type.startswith(("agent_", "cascade_")) else "lifecycle"
    return f"cb.workflows.{subject_token(workflow_slug)}.events.{group}"


def agent_subject(tenant_slug: str, agent_slug: str) -> str:
    return f"cb.agent.execute.{subject_token(tenant_slug)}.{subject_token(agent_slug)}"


# ---- writing (the recording transaction) ----


def _fitted(payload: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(payload, default=str).encode()) <= MAX_PAYLOAD_BYTES:
        return payload
    return {**payload, "data": None, "truncated": True}


def _tenant_slug(schema_name: str) -> str:
    slug = Tenant.objects.filter(schema_name=schema_name).values_list("slug", flat=True).first()
    return slug or schema_name


def outbox_write(event: WorkflowEvent, *, schema_name: str) -> None:
    """Queue the messages of one event for NATS (caller's transaction, the tenant's schema)."""
    payload = event.payload
    msg_id = f"{payload['resource_id']}:{payload['seq']}"
    rows = [
        EventOutbox(
            subject=workflow_subject(payload["workflow_slug"], event.type),
            msg_id=msg_id,
            payload=_fitted(dict(payload)),
        )
    ]
    agent = payload["data"].get("agent")
    if event.type == "agent_triggered" and isinstance(agent, str) and payload["execution_id"]:
        tenant_slug = _tenant_slug(schema_name)
        rows.append(
            EventOutbox(
                subject=agent_subject(tenant_slug, agent),
                msg_id=f"{msg_id}:execute",
                payload=_fitted(
                    {
                        "type": "agent_execute",
                        "tenant_id": tenant_slug,
                        "agent": agent,
                        "execution_id": payload["execution_id"],
                        "resource_id": payload["resource_id"],
                        "workflow_id": payload["workflow_id"],
                        "workflow_slug": payload["workflow_slug"],
                        "place": payload["data"].get("place"),
                        "activity": payload["data"].get("activity"),
                        "trigger": payload["data"].get("trigger"),
                        "timestamp": payload["timestamp"],
                    }
                ),
            )
        )
    EventOutbox.objects.bulk_create(rows)


def publish_after_commit(schema_name: str) -> None:
    """Once the caller's transaction commits, defer a publish job for the tenant (a failure
    here only delays the messages until the next sweep)."""
    transaction.on_commit(lambda: request_publish(schema_name))


def request_publish(schema_name: str) -> bool:
    """Defer the tenant's publish job unless one is already waiting (sync, outside any
    transaction of the caller's). False when it could not be deferred."""
    try:
        queue.defer(
            PUBLISH_TASK,
            queue=PUBLISH_QUEUE,
            lock=f"nats-publish:{schema_name}",
            queueing_lock=f"nats-publish:{schema_name}",
            schema_name=schema_name,
        )
    except AlreadyEnqueued:
        return True  # a job that has not started yet will see the new rows
    except Exception:
        logger.warning("could not defer a NATS publish job for %s", schema_name, exc_info=True)
        return False
    return True


# ---- reading and marking (sync, the tenant's schema) ----


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    subject: str
    msg_id: str
    payload: bytes
    attempts: int


def pending_rows(limit: int = BATCH) -> list[Pending]:
    rows = EventOutbox.objects.filter(published_at__isnull=True, attempts__lt=MAX_ATTEMPTS)
    return [
        Pending(
            row.id,
            row.subject,
            row.msg_id,
            json.dumps(row.payload, separators=(",", ":"), default=str).encode(),
            row.attempts,
        )
        for row in rows.order_by("id")[:limit]
    ]


def mark_published(ids: list[int]) -> None:
    if ids:
        EventOutbox.objects.filter(id__in=ids).update(published_at=timezone.now(), last_error="")


def mark_refused(row_id: int, error: str) -> None:
    EventOutbox.objects.filter(id=row_id).update(
        attempts=F("attempts") + 1, last_error=error[:2000]
    )


def purge_published(hours: int) -> int:
    cutoff = timezone.now() - dt.timedelta(hours=hours)
    deleted, _ = EventOutbox.objects.filter(published_at__lt=cutoff).delete()
    return deleted


def schemas_with_pending() -> list[str]:
    """Tenant schemas whose outbox has messages waiting (one query over all of them)."""
    table = EventOutbox._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT schema_name FROM public.{Tenant._meta.db_table} "  # noqa: S608 (our table)
            "WHERE schema_name <> 'public' "
            "AND to_regclass(quote_ident(schema_name) || '.' || quote_ident(%s)) IS NOT NULL",
            [table],
        )
        schemas = [str(row[0]) for row in cursor.fetchall()]
        if not schemas:
            return []
        quote = connection.ops.quote_name
        probes = " UNION ALL ".join(
            f"SELECT %s::text WHERE EXISTS (SELECT 1 FROM {quote(schema)}.{quote(table)} "  # noqa: S608 (quoted identifiers)
            f"WHERE published_at IS NULL AND attempts < {MAX_ATTEMPTS})"
            for schema in schemas
        )
        cursor.execute(probes, schemas)
        return [str(row[0]) for row in cursor.fetchall()]


# ---- the connection (one per worker event loop) ----


class NatsUnavailable(Exception):
    """NATS cannot be reached now (or was not, a moment ago): try again later."""


class Publisher:
    """One NATS connection and its JetStream context, made on first use and shared by the
    event loop's jobs. After a failure, :meth:`jetstream` refuses at once until the backoff
    has passed, so jobs do not each wait for a timeout while NATS is down."""

    def __init__(self) -> None:
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0
        self._delay = 0.0
        self._down_since: float | None = None

    async def jetstream(self) -> JetStreamContext:
        async with self._lock:
            if self._js is not None and self._client is not None and self._client.is_connected:
                return self._js
            if time.monotonic() < self._retry_at:
                raise NatsUnavailable("NATS was unreachable a moment ago")
            await self._close()
            try:
                self._js = await self._connect()
            except Exception as exc:
                self.failed(exc)
                raise NatsUnavailable(str(exc) or type(exc).__name__) from exc
            return self._js

    async def _connect(self) -> JetStreamContext:
        import nats

        async def quiet(exc: Exception) -> None:
            logger.debug("nats: %r", exc)

        servers = [s.strip() for s in settings.NATS_URL.split(",") if s.strip()]
        timeout = settings.NATS_CONNECT_TIMEOUT_SECONDS
        # nats-py retries the first connection forever unless max_reconnect_attempts is
        # positive. With 1, a server is tried twice, 0.5 s apart (a refused connection fails
        # in about half a second); a lost connection is tried twice again, then the client
        # closes and the next job connects afresh after the backoff. The timeout is a guard.
        async with asyncio.timeout(2 * timeout * len(servers) + 1):
            client = await nats.connect(
                servers=servers,
                name="circuit-breaker-agents",
                connect_timeout=timeout,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.5,
                error_cb=quiet,
            )
        self._client = client
        js = client.jetstream(timeout=settings.NATS_PUBLISH_TIMEOUT_SECONDS)
        await ensure_streams(js)
        if self._down_since is not None:
            logger.warning("NATS reachable again after %.1fs", time.monotonic() - self._down_since)
        self._down_since = None
        self._delay = 0.0
        return js

    def failed(self, exc: BaseException) -> None:
        """Leave NATS alone for a while (1 s, doubling up to ``NATS_RETRY_MAX_SECONDS``)."""
        self._js = None
        self._delay = min(max(self._delay * 2, 1.0), settings.NATS_RETRY_MAX_SECONDS)
        self._retry_at = time.monotonic() + self._delay
        if self._down_since is None:
            self._down_since = time.monotonic()
            logger.warning("NATS unreachable (%r); events wait in the outbox", exc)

    async def _close(self) -> None:
        client, self._client, self._js = self._client, None, None
        if client is not None and not client.is_closed:
            try:
                await client.close()
            except Exception:  # it is being dropped anyway
                logger.debug("closing a NATS connection failed", exc_info=True)

    async def close(self) -> None:
        async with self._lock:
            await self._close()


_publishers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Publisher] = (
    weakref.WeakKeyDictionary()
)


def get_publisher() -> Publisher:
    loop = asyncio.get_running_loop()
    publisher = _publishers.get(loop)
    if publisher is None:
        publisher = _publishers[loop] = Publisher()
    return publisher


async def ensure_streams(js: JetStreamContext) -> None:
    """Create the platform's streams when missing; existing ones are left as configured."""
    from nats.js.errors import NotFoundError

    for name, subjects in STREAMS:
        try:
            await js.stream_info(name)
        except NotFoundError:
            try:
                await js.add_stream(
                    name=name,
                    subjects=[subjects],
                    duplicate_window=settings.NATS_DUPLICATE_WINDOW_SECONDS,
                )
            except Exception as exc:  # e.g. another stream already takes these subjects
                logger.warning("could not create the NATS stream %s: %r", name, exc)


def _transient(exc: BaseException) -> bool:
    """A failure of the connection or of NATS as a whole (as opposed to one message)."""
    from nats import errors

    if isinstance(exc, (TimeoutError, OSError, errors.TimeoutError, errors.NoRespondersError)):
        return True
    return isinstance(
        exc,
        (
            errors.ConnectionClosedError,
            errors.ConnectionDrainingError,
            errors.ConnectionReconnectingError,
            errors.NoServersError,
            errors.StaleConnectionError,
            errors.OutboundBufferLimitError,
        ),
    )


# ---- publishing (the job) ----


async def publish_pending(schema_name: str) -> int:
    """Publish the tenant's waiting messages in order; returns how many JetStream took.
    Stops at the first failure (later messages wait, so the order holds)."""
    if not settings.NATS_URL:
        return 0
    publisher = get_publisher()
    try:
        js = await publisher.jetstream()
    except NatsUnavailable:
        return 0
    published = 0
    while True:
        rows = await in_schema(schema_name, pending_rows, BATCH)
        done: list[int] = []
        failure: tuple[Pending, BaseException] | None = None
        for row in rows:
            try:
                await js.publish(row.subject, row.payload, headers={"Nats-Msg-Id": row.msg_id})
            except Exception as exc:
                failure = (row, exc)
                break
            done.append(row.id)
        await in_schema(schema_name, mark_published, done)
        published += len(done)
        if failure is not None:
            refused, error = failure
            if _transient(error):
                publisher.failed(error)
            else:
                logger.warning("NATS refused %s (%s): %r", refused.msg_id, refused.subject, error)
                await in_schema(schema_name, mark_refused, refused.id, repr(error))
            return published
        if len(rows) < BATCH:
            return published


def sweep(*, purge: bool) -> list[str]:
    """The periodic sweep (sync): defer a publish job for every tenant with messages waiting;
    with ``purge``, also delete published rows past ``NATS_OUTBOX_RETENTION_HOURS``. Returns
    the tenants it deferred jobs for."""
    waiting = schemas_with_pending()
    for schema_name in waiting:
        request_publish(schema_name)
    if purge:
        for schema_name in queue.tenant_schemas():
            run_in_schema(schema_name, purge_published, settings.NATS_OUTBOX_RETENTION_HOURS)
    return waiting
