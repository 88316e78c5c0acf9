"""The stored, numbered event log of one execution.

Every event the engine emits gets the next sequence number of its execution. Consecutive
``chunk`` events are coalesced into one row (text joined; ``sequence``..``sequence_end`` keep the
engine's chunk numbers), so a long answer costs a handful of rows, not one per token. Rows are
written in batches: when ``flush`` is called, and at every non-chunk event when ``live`` is set
(so that watchers see progress while the run goes on).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agents.engine import Event
from agents.models import ExecutionEvent
from tenants.context import in_schema

# A coalesced chunk row is closed when its text reaches this size.
MAX_CHUNK_ROW_CHARS = 4096


class EventLog:
    def __init__(
        self,
        *,
        schema_name: str,
        execution_id: str,
        live: bool = False,
        listener: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.schema_name = schema_name
        self.execution_id = execution_id
        self.live = live
        self.listener = listener
        self._next_seq = 1
        self._pending: list[dict[str, Any]] = []  # rows not yet written: {"seq", "type", "data"}

    @property
    def pending(self) -> list[dict[str, Any]]:
        return self._pending

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
            self._pending.append({"seq": self._next_seq, "type": kind, "data": data})
            self._next_seq += 1
        if self.listener is not None:
            await self.listener({"type": kind, **data})
        if self.live and kind != "chunk":
            await self.flush()

    def take_rows(self) -> list[ExecutionEvent]:
        rows = [
            ExecutionEvent(
                execution_id=self.execution_id,
                seq=item["seq"],
                type=item["type"],
                data=item["data"],
            )
            for item in self._pending
        ]
        self._pending = []
        return rows

    async def flush(self) -> None:
        if self._pending:
            rows = self.take_rows()
            await in_schema(self.schema_name, ExecutionEvent.objects.bulk_create, rows)
