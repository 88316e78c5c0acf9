"""The stored, numbered event log of one execution.

Every event the engine emits gets the next sequence number of its execution. Consecutive
``chunk`` events waiting to be written are coalesced into one row (text joined;
``sequence``..``sequence_end`` keep the engine's chunk numbers), so a long answer costs a handful
of rows, not one per token.

Two modes:
- batch (blocking runs nobody watches): rows are written once, with the terminal state;
- live: a background flusher writes whatever is pending as soon as the previous write is done
  (one INSERT + NOTIFY per batch), so the first token is written at once and, under load,
  batches grow by themselves instead of queueing writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from agents.engine import TERMINAL_EVENT_TYPES, Event
from agents.models import ExecutionEvent
from agents.streaming.hub import get_hub
from tenants.context import in_schema

# A coalesced chunk row is closed when its text reaches this size.
MAX_CHUNK_ROW_CHARS = 4096


def write_events(schema_name: str, execution_id: str, rows: list[ExecutionEvent]) -> None:
    """Insert rows (in the caller's schema). A trigger NOTIFYs every process at COMMIT."""
    if rows:
        ExecutionEvent.objects.bulk_create(rows)


class EventLog:
    def __init__(
        self,
        *,
        schema_name: str,
        execution_id: str,
        live: bool = False,
        next_seq: int = 1,
        listener: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.schema_name = schema_name
        self.execution_id = execution_id
        self.live = live
        self.listener = listener
        self._next_seq = next_seq
        self._pending: list[dict[str, Any]] = []  # rows not yet written: {"seq", "type", "data"}
        self._flusher: asyncio.Task[None] | None = None
        # Live mode holds the terminal event back: it is written with the terminal status, so
        # whoever sees "complete" also finds the execution completed.
        self._held: list[dict[str, Any]] = []

    async def emit(self, event: Event) -> None:
        data = {k: v for k, v in dict(event).items() if k != "type"}
        kind = str(event["type"])
        last = self._pending[-1] if self._pending else None
        if (
            kind == "chunk"
            and last is not None
            and last["type"] == "chunk"
            and len(last["data"]["text"]) < MAX_CHUNK_ROW_CHARS
        ):
            last["data"]["text"] += data.get("text", "")
            last["data"]["sequence_end"] = data.get("sequence")
        else:
            row = {"seq": self._next_seq, "type": kind, "data": data}
            self._next_seq += 1
            (self._held if self.live and kind in TERMINAL_EVENT_TYPES else self._pending).append(
                row
            )
        if self.listener is not None:
            await self.listener({"type": kind, **data})
        if self.live and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush_loop())

    def take_rows(self, *, final: bool = False) -> list[ExecutionEvent]:
        """Rows to write now; ``final`` includes the held-back terminal event."""
        items = self._pending + (self._held if final else [])
        self._pending = []
        if final:
            self._held = []
        return [
            ExecutionEvent(
                execution_id=self.execution_id,
                seq=item["seq"],
                type=item["type"],
                data=item["data"],
            )
            for item in items
        ]

    async def _flush_loop(self) -> None:
        while self._pending:
            rows = self.take_rows()
            await in_schema(
                self.schema_name, write_events, self.schema_name, self.execution_id, rows
            )
            # Local followers need not wait for the NOTIFY round trip.
            get_hub().wake(self.schema_name, self.execution_id)

    async def drain(self) -> None:
        """Wait until everything handed to a live flusher is written (not the pending rest)."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
