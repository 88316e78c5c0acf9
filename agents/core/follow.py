"""Reading an execution's event log as it grows: what every stream (SSE, WebSocket, the admin's
test run, MCP) frames.

The log is the one source of truth: whoever started the run, wherever it runs, a follower reads
the stored rows by sequence number and is woken by the process's :class:`EventHub`. Resuming is
the same read from a cursor.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings

from agents.core.hub import get_hub
from agents.core.outage import retry_while_down
from agents.engine import TERMINAL_EVENT_TYPES
from agents.models import TERMINAL_STATUSES, Execution, ExecutionEvent
from tenants.context import in_schema

# Wake up and look at the table even without a notification (lost NOTIFY, hub reconnecting).
POLL_SECONDS = 1.0
BATCH = 500
# After this long without an event, look at the execution's status: a run ended without a
# terminal event (rows from before every ending wrote one) must not be followed forever.
STATUS_CHECK_SECONDS = 15.0

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


def _is_terminal(execution_id: str) -> bool:
    status = Execution.objects.filter(pk=execution_id).values_list("status", flat=True).first()
    return status is None or status in TERMINAL_STATUSES


async def read_events(schema_name: str, execution_id: str, after: int = 0) -> list[StoredEvent]:
    """Stored events with ``seq > after`` (at most ``BATCH``), oldest first."""
    return await in_schema(schema_name, _read, execution_id, after)


async def _read_patiently(schema_name: str, execution_id: str, after: int) -> list[StoredEvent]:
    # A database blip of a few seconds is invisible to the follower; a longer outage raises
    # DatabaseUnavailable, and the transport ends the stream with a retryable error.
    return await retry_while_down(
        lambda: read_events(schema_name, execution_id, after),
        patience=settings.STREAM_DB_PATIENCE_SECONDS,
        what="reading an event log",
    )


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
        last_event_at = last_check_at = loop.time()
        # A client resuming after the end must not wait for the next status check.
        resuming = after > 0
        while True:
            wake.clear()  # clear before reading: a notify during the read is not lost
            events = await _read_patiently(schema_name, execution_id, after)
            if resuming and not events:
                last_check_at = 0.0  # look at the status right away
            resuming = False
            for event in events:
                after = event.seq
                yield event
                if event.terminal:
                    return
            if events:
                last_event_at = last_check_at = loop.time()
                if len(events) == BATCH:
                    continue
            elif loop.time() - last_check_at >= STATUS_CHECK_SECONDS:
                last_check_at = loop.time()
                if await in_schema(schema_name, _is_terminal, execution_id):
                    # Ended without a terminal event: hand over what is left, then stop.
                    while rest := await _read_patiently(schema_name, execution_id, after):
                        for event in rest:
                            after = event.seq
                            yield event
                    return
            timeout = POLL_SECONDS
            if idle is not None:
                timeout = min(timeout, max(idle - (loop.time() - last_event_at), 0.0))
            try:
                await asyncio.wait_for(wake.wait(), timeout)
            except TimeoutError:
                if idle is not None and loop.time() - last_event_at >= idle:
                    last_event_at = loop.time()
                    yield None


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
        while True:
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
            timeout = POLL_SECONDS
            if idle is not None:
                timeout = min(timeout, max(idle - (loop.time() - last_event_at), 0.0))
            try:
                await asyncio.wait_for(wake.wait(), timeout)
            except TimeoutError:
                if idle is not None and loop.time() - last_event_at >= idle:
                    last_event_at = loop.time()
                    yield None
