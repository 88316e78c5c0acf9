"""Writing the stored, numbered event log of one execution as the run emits it.

Every event the engine emits gets the next sequence number of its execution. Consecutive
``chunk`` events waiting to be written are coalesced into one row (text joined;
``sequence``..``sequence_end`` keep the engine's chunk numbers), so a long answer costs a handful
of rows, not one per token. A background flusher writes whatever is pending as soon as the
previous write is done (one INSERT per batch; a trigger NOTIFYs every process at COMMIT), so the
first token is written at once and, under load, batches grow by themselves instead of queueing.

The terminal event (``complete``, ``error``, ``cancelled``) is held back and written by
:mod:`agents.core.finish` in the same transaction as the terminal status: whoever sees the one
finds the other.

Event rows are committed with ``synchronous_commit = off``: the terminal transaction is
durable, and WAL is flushed in order, so once it is on disk every earlier event is too; a crash
before it loses only events of a run that the sweeper restarts anyway (with a ``reset``).
While the database is unreachable the flusher keeps the rows and retries; it gives up only on
a sequence clash, which means another worker took the run over (then ``on_superseded`` runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from agents.core.hub import get_hub
from agents.core.outage import DatabaseUnavailable, retry_while_down
from agents.engine import TERMINAL_EVENT_TYPES, Event
from agents.models import ExecutionEvent
from tenants.context import in_schema

logger = logging.getLogger(__name__)

# A coalesced chunk row is closed when its text reaches this size.
MAX_CHUNK_ROW_CHARS = 4096

Row = dict[str, Any]  # {"seq", "type", "data"}


# One message, two statements, one (implicit) transaction in autocommit: the SET LOCAL holds
# for the INSERT only. Two round trips per batch with the search path, instead of five.
_WRITE_EVENTS_SQL = """
SET LOCAL synchronous_commit TO OFF;
INSERT INTO agents_executionevent (execution_id, seq, type, data, created_at)
SELECT %s, e.seq, e.type, e.data, %s
  FROM unnest(%s::integer[], %s::varchar[], %s::jsonb[]) AS e(seq, type, data)
"""


def event_columns(rows: list[ExecutionEvent]) -> list[Any]:
    """The seq, type and data arrays of ``rows`` (one execution's), as parameters of an
    ``unnest(%s::integer[], %s::varchar[], %s::jsonb[])``; data prepared as the ORM would."""
    data = ExecutionEvent._meta.get_field("data")
    return [
        [row.seq for row in rows],
        [row.type for row in rows],
        [data.get_db_prep_save(row.data, connection) for row in rows],
    ]


def write_events(rows: list[ExecutionEvent]) -> None:
    """Insert one execution's event rows in the current schema, committed without waiting for
    the disk. Inside a caller's transaction, in a savepoint: a clash (another worker's rows)
    rolls back only this batch."""
    if not rows:
        return
    params = [rows[0].execution_id, timezone.now(), *event_columns(rows)]
    with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
        with connection.cursor() as cursor:
            cursor.execute(_WRITE_EVENTS_SQL, params)


def event_rows(execution_id: str, items: list[Row]) -> list[ExecutionEvent]:
    return [
        ExecutionEvent(
            execution_id=execution_id, seq=item["seq"], type=item["type"], data=item["data"]
        )
        for item in items
    ]


def rows_stored(rows: list[ExecutionEvent]) -> bool:
    """True when these very rows are already in the log (not someone else's at those seqs)."""
    first = rows[0]
    stored = (
        ExecutionEvent.objects.filter(execution_id=first.execution_id, seq=first.seq)
        .values_list("type", "data")
        .first()
    )
    return stored == (first.type, first.data)


class EventLog:
    """``live_after``: seconds before the first write. 0 for streamed and background runs
    (their first token is written at once); a blocking run waits a moment, so that one that
    ends quickly writes its whole log with its terminal state in one transaction, while a
    longer one is still watched live."""

    def __init__(
        self, *, schema_name: str, execution_id: str, next_seq: int = 1, live_after: float = 0.0
    ) -> None:
        self.schema_name = schema_name
        self.execution_id = execution_id
        self.live_after = live_after
        self._writing = False
        self._next_seq = next_seq
        self._pending: list[Row] = []  # rows not yet written
        self._held: list[Row] = []  # the terminal event, written with the terminal status
        self._flusher: asyncio.Task[None] | None = None
        self.superseded = False
        # Called once when another worker has taken this run over (its rows clash with ours).
        self.on_superseded: Callable[[], None] | None = None

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
            (self._held if kind in TERMINAL_EVENT_TYPES else self._pending).append(row)
        if not self.superseded and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush_loop())

    def take_rows(self, *, final: bool = False) -> list[ExecutionEvent]:
        """Rows not yet written; ``final`` adds the held-back terminal event."""
        items = self._pending + (self._held if final else [])
        self._pending = []
        if final:
            self._held = []
        return event_rows(self.execution_id, items)

    async def _flush_loop(self) -> None:
        if self.live_after > 0:
            await asyncio.sleep(self.live_after)
            self.live_after = 0.0  # only before the first write
        self._writing = True
        while self._pending and not self.superseded:
            items = self._pending
            self._pending = []
            rows = event_rows(self.execution_id, items)
            try:
                # ignore: mypy cannot infer a lambda whose parameter has a default (`rows=rows`
                # binds this batch, as ruff's B023 asks).
                await retry_while_down(
                    lambda rows=rows: in_schema(self.schema_name, write_events, rows),  # type: ignore[misc]
                    patience=settings.EXECUTION_STORE_PATIENCE_SECONDS,
                    what="writing execution events",
                )
            except IntegrityError:
                if not await in_schema(self.schema_name, rows_stored, rows):
                    self._supersede()
                    return
                # A retry of a batch whose first COMMIT did succeed (the reply was lost).
            except DatabaseUnavailable:
                # Keep them: the terminal transaction writes whatever is still pending.
                self._pending = items + self._pending
                return
            # Local followers need not wait for the NOTIFY round trip.
            get_hub().wake(self.schema_name, self.execution_id)

    def _supersede(self) -> None:
        logger.warning(
            "execution %s was taken over by another worker; this run stops", self.execution_id
        )
        self.superseded = True
        if self.on_superseded is not None:
            self.on_superseded()

    async def drain(self) -> None:
        """Wait until the flusher is done with what it took (not the pending rest). A flusher
        still waiting for its first write is stopped: the terminal transaction takes it all."""
        flusher = self._flusher
        if flusher is None or flusher.done():
            return
        if not self._writing:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            return
        await asyncio.shield(flusher)
