"""Reading an execution's event log as it grows: what SSE, WebSocket and MCP streams share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from agents.engine import TERMINAL_EVENT_TYPES
from agents.models import ExecutionEvent
from agents.streaming.hub import get_hub
from tenants.context import in_schema

# Wake up and look at the table even without a notification (lost NOTIFY, hub reconnecting).
POLL_SECONDS = 1.0
BATCH = 500


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


async def read_events(schema_name: str, execution_id: str, after: int = 0) -> list[StoredEvent]:
    return await in_schema(schema_name, _read, execution_id, after)


async def follow_events(
    schema_name: str, execution_id: str, *, after: int = 0, idle: float | None = None
) -> AsyncIterator[StoredEvent | None]:
    """Yield stored events with ``seq > after`` in order, waiting for new ones, until the
    terminal event (``complete``, ``error`` or ``cancelled``) has been yielded.

    When ``idle`` is set, ``None`` is yielded after that many seconds without an event, so the
    caller can send a heartbeat. No event is ever skipped or repeated: the cursor is the
    sequence number, and notifications only say "look again".
    """
    hub = get_hub()
    loop = asyncio.get_running_loop()
    with hub.waiter(schema_name, execution_id) as wake:
        last_event_at = loop.time()
        while True:
            wake.clear()  # clear before reading: a notify during the read is not lost
            events = await read_events(schema_name, execution_id, after)
            for event in events:
                after = event.seq
                yield event
                if event.terminal:
                    return
            if events:
                last_event_at = loop.time()
                if len(events) == BATCH:
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
