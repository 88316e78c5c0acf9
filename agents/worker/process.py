"""One worker process: its executions and maintenance workers on one event loop, its event hub,
signals and supervision (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from procrastinate.app import App

from agents.core.hub import get_hub
from agents.core.queue import EXECUTIONS_QUEUE, MAINTENANCE_QUEUE
from agents.providers import aclose_all
from agents.worker.resilience import Backoff, ResilientWorker
from config import tracing
from config.database import (
    OutageLog,
    database_outage,
    database_unavailable,
)

logger = logging.getLogger("agents.worker")

# Exit code when the shutdown timeout forced the exit (runs left to other workers).
FORCED_EXIT = 3


def _worker(
    real_app: App,
    *,
    name: str,
    queue: str,
    concurrency: int,
    polling: float,
    outage: OutageLog,
    siblings: list[ResilientWorker | None],
) -> ResilientWorker:
    return ResilientWorker(
        app=real_app,
        outage=outage,
        siblings=siblings,
        queues=[queue],
        name=f"{name}/{queue}",
        concurrency=concurrency,
        fetch_job_polling_interval=polling,
        # Aborts also arrive by NOTIFY; the poll is only the fallback.
        abort_job_polling_interval=max(polling, 1.0),
        # We time the shutdown ourselves (see ``serve``): procrastinate's own timeout would
        # abort the runs, which would store them as cancelled instead of restarting them.
        shutdown_graceful_timeout=None,
        install_signal_handlers=False,
        update_heartbeat_interval=settings.WORKER_HEARTBEAT_SECONDS,
        stalled_worker_timeout=settings.WORKER_STALLED_AFTER_SECONDS,
    )


async def _open_pool(real_app: App, outage: OutageLog) -> None:
    try:
        await real_app.connector.open_async()
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        # The pool is open and keeps connecting in the background; the workers below retry
        # their registration until it succeeds.
        outage.failed(exc)


async def supervise(
    make: Callable[[], ResilientWorker],
    current: list[ResilientWorker | None],
    slot: int,
    stop: asyncio.Event,
    outage: OutageLog,
) -> None:
    """Run a worker until ``stop``; start a new one whenever it ends without being asked to
    (startup while the database is down, or an error nobody foresaw). A worker that ends has
    let its running jobs finish first, so none is lost or run twice."""
    backoff = Backoff(first=0.5)
    while not stop.is_set():
        worker = current[slot] = make()
        started = time.monotonic()
        try:
            # Nothing runs between the check above and here, so a signal cannot slip through
            # (``Worker.run`` forgets a stop requested before it started).
            await worker.run()
        except Exception as exc:
            if stop.is_set():
                logger.warning("worker %s: error while stopping: %r", worker.worker_name, exc)
                return
            if database_unavailable(exc):
                outage.failed(exc)
            else:
                logger.error(
                    "worker %s failed; starting a new one", worker.worker_name, exc_info=exc
                )
        else:
            if stop.is_set():
                return
            logger.error("worker %s stopped by itself; starting a new one", worker.worker_name)
        if time.monotonic() - started > 60:
            backoff.reset()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff.next_delay())


async def serve(
    real_app: App,
    *,
    name: str,
    concurrency: int,
    polling: float,
    shutdown_timeout: float | None,
    outage: OutageLog | None = None,
) -> int:
    """Run both workers until a signal; returns the process exit code."""
    tracing.setup("worker")  # before the first connection: statements are traced from it on
    outage = outage or database_outage
    await _open_pool(real_app, outage)
    try:
        return await _serve_open(
            real_app,
            name=name,
            concurrency=concurrency,
            polling=polling,
            shutdown_timeout=shutdown_timeout,
            outage=outage,
        )
    finally:
        with contextlib.suppress(Exception):
            await real_app.connector.close_async()


async def _serve_open(
    real_app: App,
    *,
    name: str,
    concurrency: int,
    polling: float,
    shutdown_timeout: float | None,
    outage: OutageLog,
) -> int:
    hub = get_hub()
    try:
        async with asyncio.timeout(10):
            await hub.wait_connected()
    except TimeoutError:
        # Cancels still arrive through the runs' own checks (WORKER_CANCEL_CHECK_SECONDS).
        logger.warning("event hub not connected after 10 s; starting anyway")
    current: list[ResilientWorker | None] = [None, None]
    makers: list[Callable[[], ResilientWorker]] = [
        lambda: _worker(
            real_app,
            name=name,
            queue=EXECUTIONS_QUEUE,
            concurrency=concurrency,
            polling=polling,
            outage=outage,
            siblings=current,
        ),
        lambda: _worker(
            real_app,
            name=name,
            queue=MAINTENANCE_QUEUE,
            concurrency=1,
            polling=polling,
            outage=outage,
            siblings=current,
        ),
    ]
    stop = asyncio.Event()
    force = asyncio.Event()

    received: set[int] = set()

    def on_signal(signum: int) -> None:
        # The same signal twice (Ctrl-C, Ctrl-C) forces the exit. Different ones do not:
        # `make run` passes on a SIGTERM after the terminal's SIGINT reached us too.
        if signum in received:
            logger.warning("second signal: leaving the running jobs to other workers")
            force.set()
            return
        received.add(signum)
        if stop.is_set():
            return
        logger.info("signal %s: finishing running jobs, taking no new ones", signum)
        stop.set()
        for worker in current:
            if worker is not None:
                worker.stop()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    logger.info("worker %s: %d execution slot(s), polling every %.2fs", name, concurrency, polling)
    running = asyncio.ensure_future(
        asyncio.gather(
            *(supervise(make, current, slot, stop, outage) for slot, make in enumerate(makers))
        )
    )
    if await _wait_or_force(running, stop, force, shutdown_timeout):
        hub.stop()
        # The providers' pooled HTTP clients (model calls, HTTP tools) close their connections.
        await aclose_all()
        running.result()
        return 0
    # Abandon the running jobs. Letting asyncio.run cancel them would store them as
    # cancelled; instead deregister (their jobs lose their worker, so the next sweep on any
    # worker restarts them) and leave at once, as a killed worker would.
    for worker in current:
        if worker is not None and worker.worker_id is not None:
            with contextlib.suppress(Exception):
                await real_app.job_manager.unregister_worker(worker.worker_id)
    logger.warning("shutdown timeout: left the running jobs to other workers")
    logging.shutdown()
    os._exit(FORCED_EXIT)


async def _wait_or_force(
    running: asyncio.Future[Any],
    stop: asyncio.Event,
    force: asyncio.Event,
    shutdown_timeout: float | None,
) -> bool:
    """True when the workers ended by themselves; False when they must be abandoned."""
    forced = asyncio.ensure_future(force.wait())
    try:
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([running, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not running.done():
            await asyncio.wait(
                [running, forced], timeout=shutdown_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        return running.done()
    finally:
        forced.cancel()
