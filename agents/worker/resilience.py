"""procrastinate's worker and connector, taught to ride out database outages (see the package
docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from procrastinate import jobs as procrastinate_jobs
from procrastinate import utils as procrastinate_utils
from procrastinate.connector import Notify
from procrastinate.contrib.django.utils import connector_params
from procrastinate.job_context import JobContext, JobResult
from procrastinate.psycopg_connector import PsycopgConnector
from procrastinate.retry import RetryDecision
from procrastinate.worker import Worker

from config.database import (
    OutageLog,
    database_unavailable,
    discard_broken_connections,
)
from config.tracing import job_span

logger = logging.getLogger("agents.worker")

# The first retry after a lost connection; each next one waits up to twice as long, capped by
# WORKER_RECONNECT_MAX_SECONDS.
FIRST_RETRY_SECONDS = 0.2


class Backoff:
    """Delays between attempts: doubling from ``first`` up to ``cap``, each drawn from the upper
    half of its range, so that workers that lost the database together do not all knock at
    the same instant when it comes back."""

    def __init__(self, *, first: float = FIRST_RETRY_SECONDS, cap: float | None = None) -> None:
        self.first = first
        self.cap = settings.WORKER_RECONNECT_MAX_SECONDS if cap is None else cap
        self._attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.first * 2 ** min(self._attempt, 30))
        self._attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0


class ResilientConnector(PsycopgConnector):
    """The worker's connector; its LISTEN loop (new jobs, abort requests) reconnects with
    backoff instead of failing the worker. procrastinate's own loop reconnects only when an
    established connection drops, and gives up on the first failed connection attempt, which
    is what a restart produces."""

    def __init__(self, *, outage: OutageLog, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outage = outage

    async def listen_notify(self, on_notification: Notify, channels: Iterable[str]) -> None:
        channels = list(channels)
        backoff = Backoff()
        while True:
            started = time.monotonic()
            try:
                await super().listen_notify(on_notification=on_notification, channels=channels)
            except Exception as exc:
                if not database_unavailable(exc):
                    raise
                if time.monotonic() - started > backoff.cap:
                    backoff.reset()  # it had been listening for a while: a new outage
                self.outage.failed(exc)
                # Jobs queued meanwhile are found by the workers' polls.
                await asyncio.sleep(backoff.next_delay())


def worker_connector(outage: OutageLog) -> ResilientConnector:
    return ResilientConnector(
        outage=outage,
        kwargs=connector_params(),
        # psycopg_pool waits 30 s for a connection and retries a failed one at 1, 2, 4 ... s
        # for 5 minutes by default: after an outage the worker would lag well behind the
        # database. Bounded like the web pool's (see DATABASE_POOL_TIMEOUT_SECONDS).
        timeout=settings.DATABASE_POOL_TIMEOUT_SECONDS,
        reconnect_timeout=settings.DATABASE_POOL_TIMEOUT_SECONDS,
    )


class ResilientWorker(Worker):
    """A procrastinate worker that rides out database outages (see the module docstring).

    Overrides procrastinate 3.x internals (pinned ``<4``): the job fetch, the heartbeat, the
    periodic deferrer, the abort poll, the recording of a job's end and the deregistration.
    After an outage (met by any part of the process), before fetching again, it also:
    - replaces the dead idle connections of the process's Django pool, which the jobs' ORM
      calls use and which hands out dead connections otherwise (the first job after a restart
      failed on one);
    - hands back to the queue any job the database gave it whose answer was lost with the
      connection (``doing`` under its id, yet not running here);
    - beats at once, so that no sweeper takes it for dead a moment longer than needed.
    And at every beat, if another worker starting meanwhile pruned it for a stale heartbeat
    (deleted its row), it registers again and gives its running jobs the new id (pruning left
    them without one, which a sweeper reads as lost), unless a sweeper has taken them already.
    """

    def __init__(
        self,
        *,
        outage: OutageLog,
        siblings: list[ResilientWorker | None] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs["worker_middleware"] = [
            _note_database_errors,
            *(kwargs.get("worker_middleware") or []),
        ]
        super().__init__(**kwargs)
        self._outage = outage
        # The workers of this process (this one included): after an outage all of them beat
        # before this one fetches, so that a sweep run here never takes them for dead.
        self._siblings = siblings if siblings is not None else [self]
        self._fetch_backoff = Backoff()
        # Its own heartbeat loop and a sibling's recovery may beat at once: one at a time, or
        # both could find it pruned and register it twice.
        self._beat_lock = asyncio.Lock()
        # Outages (OutageLog.count) this worker has cleaned up after.
        self._outages_handled = outage.count

    # ---- outage bookkeeping ----

    async def _process_job(self, context: JobContext) -> None:
        # One trace span per job when tracing is on (config.tracing; nothing otherwise).
        job = context.job
        with job_span(job.task_name, job_id=str(job.id), queue=job.queue):
            await super()._process_job(context)

    async def lost_database(self, exc: BaseException) -> None:
        self._outage.failed(exc)
        # Every idle connection of procrastinate's pool is dead now, and its checkout check
        # sleeps 1 s, 2 s, 4 s ... between dead ones (a heartbeat stuck there for seconds let
        # a sweeper take this worker for dead): test them all at once instead.
        pool = getattr(self.app.connector, "_async_pool", None)
        if pool is not None:
            with contextlib.suppress(Exception):
                await pool.check()

    async def _pause(self, backoff: Backoff) -> None:
        await procrastinate_utils.wait_any(
            self._stop_event.wait(), asyncio.sleep(backoff.next_delay())
        )

    # ---- job fetch ----

    async def _fetch_and_process_jobs(self) -> None:
        try:
            if self._outages_handled != self._outage.count:
                await self._after_outage()
            # ignore: procrastinate leaves this internal untyped (excluded, but not via super)
            await super()._fetch_and_process_jobs()  # type: ignore[no-untyped-call]
        except Exception as exc:
            if _names_a_missing_worker(exc):
                # Pruned: its id is gone, so fetching under it breaks a foreign key.
                await self._beat()
                return
            if not database_unavailable(exc):
                raise
            await self.lost_database(exc)
            await self._pause(self._fetch_backoff)
            self._new_job_event.set()  # look again right away, not at the next poll
            return
        self._fetch_backoff.reset()

    async def _after_outage(self) -> None:
        seen = self._outage.count
        for worker in self._siblings:
            if worker is not None and worker.worker_id is not None:
                await worker._beat()
        await self._hand_back_lost_fetches()
        await sync_to_async(discard_broken_connections, thread_sensitive=True)()
        self._outages_handled = seen
        self._outage.recovered()

    async def _hand_back_lost_fetches(self) -> None:
        # Runs in the fetch loop itself, between two fetches: a job this worker is fetching
        # right now cannot be mistaken for a lost one.
        if self.worker_id is None:
            return
        running = {context.job.id for context in self._running_jobs.values()}
        mine = await self.app.job_manager.list_jobs_async(
            worker_id=self.worker_id, status=procrastinate_jobs.Status.DOING.value
        )
        for job in mine:
            if job.id is None or job.id in running:
                continue
            try:
                await self.app.job_manager.retry_job_by_id_async(
                    job_id=job.id, retry_at=procrastinate_utils.utcnow()
                )
            except Exception as exc:
                if database_unavailable(exc):
                    raise
                logger.warning("job %s: could not queue it again (%s)", job.id, exc)
            else:
                logger.warning("job %s was fetched as the connection dropped: queued again", job.id)

    # ---- heartbeat ----

    async def _update_heartbeat(self) -> None:
        backoff = Backoff()
        delay = self.update_heartbeat_interval
        while True:
            await asyncio.sleep(delay)
            try:
                await self._beat()
            except Exception as exc:
                if not database_unavailable(exc):
                    raise
                await self.lost_database(exc)
                # Beat again as soon as the database is back, not an interval later.
                delay = min(backoff.next_delay(), self.update_heartbeat_interval)
            else:
                self._outage.recovered()
                backoff.reset()
                delay = self.update_heartbeat_interval

    async def _beat(self) -> None:
        """Write the heartbeat; if the row is gone, register again (see the class docstring).
        procrastinate's own heartbeat updates nothing, silently, once the row is gone."""
        async with self._beat_lock:
            assert self.worker_id is not None
            beaten = await self.app.connector.execute_query_all_async(
                "UPDATE procrastinate_workers SET last_heartbeat = now() "
                "WHERE id = %(worker_id)s RETURNING id",
                worker_id=self.worker_id,
            )
            if not beaten:
                await self._register_again()

    async def _register_again(self) -> None:
        connector = self.app.connector
        lost_id = self.worker_id
        self.worker_id = await self.app.job_manager.register_worker()
        running = [c.job.id for c in self._running_jobs.values() if c.job.id is not None]
        if running:
            # Pruning set their worker_id to NULL, which the sweeper reads as "lost".
            await connector.execute_query_async(
                "UPDATE procrastinate_jobs SET worker_id = %(worker_id)s "
                "WHERE id = ANY(%(job_ids)s) AND status = 'doing' AND worker_id IS NULL",
                worker_id=self.worker_id,
                job_ids=running,
            )
        logger.warning(
            "worker %s had been pruned (heartbeat stale during an outage): registered again as "
            "%s, with its %d running job(s)",
            lost_id,
            self.worker_id,
            len(running),
        )

    # ---- periodic deferrer and abort poll ----

    async def _periodic_deferrer(self) -> None:
        backoff = Backoff()
        while True:
            started = time.monotonic()
            try:
                # ignore: procrastinate leaves this internal untyped (excluded, but not via super)
                await super()._periodic_deferrer()  # type: ignore[no-untyped-call]
                return  # no periodic task at all
            except Exception as exc:
                if not database_unavailable(exc):
                    raise
                if time.monotonic() - started > backoff.cap:
                    backoff.reset()
                await self.lost_database(exc)
                # Defers are idempotent per timestamp: starting over repeats none.
                await asyncio.sleep(backoff.next_delay())

    async def _poll_jobs_to_abort(self) -> None:
        # procrastinate's version logs a traceback at every failed poll.
        backoff = Backoff()
        delay = self.abort_job_polling_interval
        while True:
            await asyncio.sleep(delay)
            delay = self.abort_job_polling_interval
            if not self._running_jobs:
                continue
            try:
                job_ids = await self.app.job_manager.list_jobs_to_abort_async()
            except Exception as exc:
                if database_unavailable(exc):
                    await self.lost_database(exc)
                    delay = max(delay, backoff.next_delay())
                else:
                    logger.exception("polling for jobs to abort failed")
                continue
            backoff.reset()
            self._handle_abort_jobs_requested(job_ids)

    # ---- a job's end ----

    async def _persist_job_status(
        self,
        job: procrastinate_jobs.Job,
        status: procrastinate_jobs.Status,
        retry_decision: RetryDecision | None,
        context: JobContext,
        job_result: JobResult | None,
    ) -> None:
        """Record the job's end, waiting out an outage: left unrecorded, the job would stay
        ``doing`` under a live worker, which no sweeper ever takes back."""
        backoff = Backoff()
        retried = False
        while True:
            try:
                await super()._persist_job_status(
                    job=job,
                    status=status,
                    retry_decision=retry_decision,
                    context=context,
                    job_result=job_result,
                )
                return
            except Exception as exc:
                if not database_unavailable(exc):
                    if not retried:
                        raise
                    # The attempt that lost its answer had gone through (the job is no
                    # longer "doing"), or the sweeper took the job meanwhile.
                    logger.warning("job %s: its end was recorded already (%s)", job.id, exc)
                    if job.id is not None:
                        self._job_ids_to_abort.pop(job.id, None)
                    return
                retried = True
                await self.lost_database(exc)
                await asyncio.sleep(backoff.next_delay())

    # ---- shutdown ----

    async def _shutdown(self, side_tasks: list[asyncio.Task[Any]]) -> None:
        try:
            await super()._shutdown(side_tasks)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            # Its row goes stale and is pruned; its jobs all ended before this point.
            logger.warning(
                "worker %s stopped without deregistering: database unreachable", self.worker_id
            )


def _names_a_missing_worker(exc: BaseException) -> bool:
    cause = exc.__cause__
    return isinstance(cause, psycopg.errors.ForeignKeyViolation) and "worker_id" in str(cause)


async def _note_database_errors(
    call_next: Callable[[], Awaitable[Any]], context: JobContext, worker: Worker
) -> Any:
    """Worker middleware: a job that met an unreachable database (a dead pooled connection
    after a blip nobody else noticed, say) counts as an outage, so that the worker cleans up
    before it fetches the next job. The job's own fate is its task's retry policy."""
    try:
        return await call_next()
    except Exception as exc:
        if database_unavailable(exc) and isinstance(worker, ResilientWorker):
            await worker.lost_database(exc)
        raise
