"""A started (or found) run, as every interface sees it: its id, its events, its result."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import connection

from agents.core.follow import StoredEvent, follow_events
from agents.core.hub import get_hub
from agents.core.idempotency import IdempotencyInProgress
from agents.core.requests import OnDisconnect, RunMode
from agents.models import TERMINAL_STATUSES, Execution
from config import tracing
from tenants.context import in_schema

logger = logging.getLogger(__name__)

# Runs detached from their caller. The event loop keeps only weak references to tasks: without
# this set, a run whose client went away (on_disconnect=continue) could be garbage collected.
_DETACHED: set[asyncio.Task[Any]] = set()


def _close_connection() -> None:
    # Looked up on the thread that runs this: Django's connections are per thread.
    connection.close()


async def _detached(run: Coroutine[Any, Any, Execution]) -> Execution:
    # Its own thread-sensitive context: the run may outlive the request whose database thread
    # ends with the response.
    async with ThreadSensitiveContext():
        try:
            return await run
        finally:
            await sync_to_async(_close_connection, thread_sensitive=True)()


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("run %s failed", task.get_name(), exc_info=task.exception())


def start_detached(run: Coroutine[Any, Any, Execution], *, name: str) -> asyncio.Task[Execution]:
    """Run ``run`` in a task of its own that may outlive the caller (a stream's request).

    The task starts from an *empty* context: a copy of a view's context would carry asgiref's
    per-request executors (the sync middleware's thread), which quit when the response starts,
    and every later database call of the run would fail ("CurrentThreadExecutor already quit").
    """
    context = contextvars.Context()
    tracing.carry_into(context)  # the request's trace goes on (nothing while tracing is off)
    task = asyncio.create_task(_detached(run), name=name, context=context)
    task.add_done_callback(_log_failure)
    _DETACHED.add(task)
    task.add_done_callback(_DETACHED.discard)
    return task


def _current(execution_id: str) -> Execution:
    return Execution.objects.select_related("agent").get(pk=execution_id)


class RunHandle:
    """What :func:`agents.core.start_run` returns.

    ``execution`` is the row as admitted (or as found, for an ``Idempotency-Key`` repeat:
    ``replayed``). ``events()`` follows the stored log from a cursor; ``result()`` waits for
    the terminal state; ``cancel()`` stops a run executing in this process (elsewhere:
    :func:`agents.core.cancel_execution`).
    """

    def __init__(
        self,
        schema_name: str,
        execution: Execution,
        *,
        mode: RunMode,
        on_disconnect: OnDisconnect | None = None,
        replayed: bool = False,
        task: asyncio.Task[Execution] | None = None,
    ) -> None:
        self.schema_name = schema_name
        self.execution = execution
        self.mode = mode
        # What the request asked for when its streaming client goes away (None: not said).
        self.on_disconnect = on_disconnect
        self.replayed = replayed
        self._task = task

    @property
    def execution_id(self) -> str:
        return self.execution.id

    @property
    def agent_id(self) -> str:
        return self.execution.agent_id

    def events(
        self, *, after: int = 0, idle: float | None = None
    ) -> AsyncIterator[StoredEvent | None]:
        """The stored events after ``after``, then live ones, until the terminal event."""
        return follow_events(self.schema_name, self.execution_id, after=after, idle=idle)

    async def result(self, *, wait: float | None = None) -> Execution:
        """The execution once it has ended. A run executing here is awaited (cancelling the
        caller cancels it); any other is awaited through its event log, which holds no
        database connection while waiting, for up to ``wait`` seconds
        (``IdempotencyInProgress``, 409 with Retry-After, after that)."""
        if self._task is not None:
            return await self._task
        if self.execution.status in TERMINAL_STATUSES:
            return self.execution
        try:
            async with asyncio.timeout(wait):
                async for event in self.events():
                    if event is not None and event.terminal:
                        break
        except TimeoutError:
            raise IdempotencyInProgress() from None
        self.execution = await in_schema(self.schema_name, _current, self.execution_id)
        return self.execution

    def cancel(self) -> None:
        """Stop the run if it executes in this process (it stores itself as cancelled)."""
        if self._task is None or self._task.done():
            return
        if not get_hub().cancel_local(self.schema_name, self.execution_id):
            self._task.cancel()

    @property
    def running_here(self) -> bool:
        """True while the run executes in this process (not queued, not elsewhere, not over)."""
        return self._task is not None and not self._task.done()

    @property
    def task(self) -> asyncio.Task[Execution] | None:
        """The task executing the run in this process, if it does."""
        return self._task
