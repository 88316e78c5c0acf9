"""Reading an execution's event log as it grows: what every stream (SSE, WebSocket, the admin's
test run, MCP) frames.

The log is the one source of truth: whoever started the run, wherever it runs, a follower reads
the stored rows by sequence number and is woken by the process's :class:`EventHub`. Resuming is
the same read from a cursor.

An idle follower costs the database nothing: while the hub listens, every committed row is
announced by a NOTIFY (PostgreSQL delivers those to a listening session without loss), so a
follower reads only when woken. Only while the hub is not listening (starting, reconnecting)
do followers poll, every ``POLL_SECONDS``; the hub wakes them all when it listens again.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection

from agents.core.hub import EventHub, get_hub
from agents.core.outage import retry_while_down
from agents.engine import TERMINAL_EVENT_TYPES
from agents.models import TERMINAL_STATUSES, Execution, ExecutionEvent
from tenants.context import in_schema, require_tenant_schema, unscoped_cursor

# How often followers look at the table while the hub is not listening.
POLL_SECONDS = 1.0
BATCH = 500

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    type: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENT_TYPES


def _read(execution_id: str, after: int) -> list[StoredEvent]:
    rows = ExecutionEvent.objects.filter(execution_id=execution_id, seq__gt=after).order_by("seq")[
        :BATCH
    ]
    return [StoredEvent(row.seq, row.type, row.data) for row in rows]


# The execution's status and its events past a cursor, in one statement (one snapshot): every
# ending stores the terminal status and the terminal event in one transaction, so a terminal
# status here means every event of the run is in this result or an earlier one. A run ended
# without a terminal event (rows older than that rule) or deleted (retention) is thereby
# noticed at the first read, without a separate status check.
# Schema-qualified, so the read sets no search path (tenants.context.unscoped_cursor): one
# round trip per read, for every follower woken by every batch of events.
_STATUS_AND_EVENTS_SQL = """
SELECT x.status, e.seq, e.type, e.data
FROM {schema}.{executions} x
LEFT JOIN LATERAL (
    SELECT seq, type, data FROM {schema}.{events}
    WHERE execution_id = x.id AND seq > %s
    ORDER BY seq
    LIMIT %s
) e ON true
WHERE x.id = %s
"""


def _read_with_status(
    schema_name: str, execution_id: str, after: int
) -> tuple[bool, list[StoredEvent]]:
    """(has the run ended?, events past ``after``), read in ``schema_name``."""
    sql = _STATUS_AND_EVENTS_SQL.format(
        schema=connection.ops.quote_name(require_tenant_schema(schema_name)),
        executions=connection.ops.quote_name(Execution._meta.db_table),
        events=connection.ops.quote_name(ExecutionEvent._meta.db_table),
    )
    with unscoped_cursor() as cursor:
        cursor.execute(sql, [after, BATCH, execution_id])
        rows = cursor.fetchall()
    if not rows:
        return True, []  # no such execution (any more): nothing will come
    ended = rows[0][0] in TERMINAL_STATUSES
    events = [
        # Django reads jsonb as text and leaves decoding to the field; a raw cursor does it here.
        StoredEvent(seq, kind, json.loads(data) if isinstance(data, str) else data)
        for _, seq, kind, data in rows
        if seq is not None
    ]
    return ended, events


async def read_events(schema_name: str, execution_id: str, after: int = 0) -> list[StoredEvent]:
    """Stored events with ``seq > after`` (at most ``BATCH``), oldest first."""
    return await in_schema(schema_name, _read, execution_id, after)


async def _read_patiently(
    schema_name: str, execution_id: str, after: int
) -> tuple[bool, list[StoredEvent]]:
    # A database blip of a few seconds is invisible to the follower; a longer outage raises
    # DatabaseUnavailable, and the transport ends the stream with a retryable error.
    return await retry_while_down(
        lambda: in_schema(schema_name, _read_with_status, schema_name, execution_id, after),
        patience=settings.STREAM_DB_PATIENCE_SECONDS,
        what="reading an event log",
    )


def _wait_seconds(hub: EventHub, idle: float | None, idle_for: float) -> float | None:
    """How long a follower may wait for a wake-up: forever while the hub listens (a NOTIFY
    will come), ``POLL_SECONDS`` while it does not; never past the next heartbeat."""
    timeout = None if hub.listening else POLL_SECONDS
    if idle is not None:
        until_heartbeat = max(idle - idle_for, 0.0)
        timeout = until_heartbeat if timeout is None else min(timeout, until_heartbeat)
    return timeout


async def follow_events(
    schema_name: str, execution_id: str, *, after: int = 0, idle: float | None = None
) -> AsyncIterator[StoredEvent | None]:
    """Yield stored events with ``seq > after`` in order, waiting for new ones, until the
    terminal event (``complete``, ``error`` or ``cancelled``) has been yielded.

    When ``idle`` is set, ``None`` is yielded after that many seconds without an event, so the
    caller can send a heartbeat. No event is ever skipped or repeated: the cursor is the
    sequence number, and notifications only say "look again". Raises
    :class:`~agents.core.outage.DatabaseUnavailable` when the database stays away longer than
    ``STREAM_DB_PATIENCE_SECONDS``.
    """
    hub = get_hub()
    loop = asyncio.get_running_loop()
    with hub.waiter(schema_name, execution_id) as wake:
        last_event_at = loop.time()
        read = True
        while True:
            if read:
                wake.clear()  # clear before reading: a notify during the read is not lost
                ended, events = await _read_patiently(schema_name, execution_id, after)
                for event in events:
                    after = event.seq
                    yield event
                    if event.terminal:
                        return
                if len(events) == BATCH:
                    continue
                if ended:
                    return  # ended without a terminal event: everything stored was handed over
                if events:
                    last_event_at = loop.time()
            read = True
            try:
                timeout = _wait_seconds(hub, idle, loop.time() - last_event_at)
                await asyncio.wait_for(wake.wait(), timeout)
            except TimeoutError:
                if idle is not None and loop.time() - last_event_at >= idle:
                    last_event_at = loop.time()
                    yield None
                    # A heartbeat is no reason to look: a listening hub would have woken us.
                    read = not hub.listening


async def _read_log(schema_name: str, read: Callable[[int], list[T]], after: int) -> list[T]:
    return await in_schema(schema_name, read, after)


async def follow_log(
    schema_name: str,
    log_id: str,
    read: Callable[[int], list[T]],
    cursor: Callable[[T], int],
    *,
    after: int = 0,
    idle: float | None = None,
    batch: int = BATCH,
) -> AsyncIterator[T | None]:
    """Follow any other numbered log that never ends (a resource's or a workflow's events):
    yield its rows past ``after`` in order, then new ones as they are committed, until the
    caller stops.

    ``read(after)`` is sync and runs in ``schema_name``: the rows whose cursor is above
    ``after``, oldest first, at most ``batch``; ``cursor(row)`` is a row's number. The log's
    writers NOTIFY ``<schema>:<log_id>:<n>`` on one of the hub's event channels at COMMIT;
    rows must commit in the order of their numbers (a row numbered below one already read is
    never seen). ``idle`` and database outages as in :func:`follow_events`.
    """
    hub = get_hub()
    loop = asyncio.get_running_loop()
    with hub.waiter(schema_name, log_id) as wake:
        last_event_at = loop.time()
        look = True
        while True:
            if look:
                wake.clear()  # clear before reading: a notify during the read is not lost
                rows = await retry_while_down(
                    functools.partial(_read_log, schema_name, read, after),
                    patience=settings.STREAM_DB_PATIENCE_SECONDS,
                    what="reading an event log",
                )
                for row in rows:
                    after = cursor(row)
                    yield row
                if rows:
                    last_event_at = loop.time()
                    if len(rows) >= batch:
                        continue
            look = True
            try:
                timeout = _wait_seconds(hub, idle, loop.time() - last_event_at)
                await asyncio.wait_for(wake.wait(), timeout)
            except TimeoutError:
                if idle is not None and loop.time() - last_event_at >= idle:
                    last_event_at = loop.time()
                    yield None
                    look = not hub.listening
