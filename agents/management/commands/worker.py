"""``python manage.py worker``: run background executions and the periodic sweeper.

One process runs two procrastinate workers on one event loop:
- ``executions`` with ``WORKER_CONCURRENCY`` slots for agent runs;
- ``maintenance`` with one slot for the sweeper and the cleanup, so that recovery never waits
  behind a full house of long runs.

The process also starts its :class:`~agents.core.hub.EventHub` before taking jobs, so a
cancel request (NOTIFY ``execution_cancel``) from any web process reaches the runs here.

SIGTERM/SIGINT: stop taking jobs and let running ones finish (``WORKER_SHUTDOWN_TIMEOUT_SECONDS``,
0 = no limit). Past the limit, or on the same signal twice, the worker deregisters and exits at once;
its unfinished jobs have no worker then, so the next sweep anywhere restarts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import socket
from typing import Any, cast

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from procrastinate.app import App
from procrastinate.contrib.django import app
from procrastinate.contrib.django.django_connector import DjangoConnector
from procrastinate.worker import Worker

from agents.core.hub import get_hub
from agents.core.queue import EXECUTIONS_QUEUE, MAINTENANCE_QUEUE

logger = logging.getLogger("agents.worker")

# Exit code when the shutdown timeout forced the exit (runs left to other workers).
FORCED_EXIT = 3


class Command(BaseCommand):
    help = "Run a worker for background executions (plus the sweeper that recovers lost runs)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--concurrency", type=int, default=None, help="default: WORKER_CONCURRENCY"
        )
        parser.add_argument(
            "--polling-interval",
            type=float,
            default=None,
            help="seconds between fallback polls (default: WORKER_POLLING_INTERVAL_SECONDS)",
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=float,
            default=None,
            help="seconds to let runs finish on SIGTERM, 0 = no limit "
            "(default: WORKER_SHUTDOWN_TIMEOUT_SECONDS)",
        )
        parser.add_argument("--name", default=None, help="worker name in logs (default: host:pid)")

    def handle(self, *args: Any, **options: Any) -> None:
        concurrency = options["concurrency"] or settings.WORKER_CONCURRENCY
        polling = options["polling_interval"] or settings.WORKER_POLLING_INTERVAL_SECONDS
        shutdown = options["shutdown_timeout"]
        if shutdown is None:
            shutdown = settings.WORKER_SHUTDOWN_TIMEOUT_SECONDS
        name = options["name"] or f"{socket.gethostname()}:{os.getpid()}"
        # The Django connector suits web requests; a worker needs its own pool and LISTEN.
        # (The cast: procrastinate's Django app always has its DjangoConnector; typed as the base.)
        connector = cast(DjangoConnector, app.connector)
        with app.replace_connector(connector.get_worker_connector()) as real_app:
            code = asyncio.run(
                serve(
                    real_app,
                    name=name,
                    concurrency=concurrency,
                    polling=polling,
                    shutdown_timeout=shutdown or None,
                )
            )
        if code:
            raise SystemExit(code)


def _worker(real_app: App, *, name: str, queue: str, concurrency: int, polling: float) -> Worker:
    return Worker(
        app=real_app,
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


async def serve(
    real_app: App, *, name: str, concurrency: int, polling: float, shutdown_timeout: float | None
) -> int:
    """Run both workers until a signal; returns the process exit code."""
    async with real_app.open_async():
        hub = get_hub()
        try:
            async with asyncio.timeout(10):
                await hub.wait_connected()
        except TimeoutError:
            # Cancels still arrive through the runs' own checks (WORKER_CANCEL_CHECK_SECONDS).
            logger.warning("event hub not connected after 10 s; starting anyway")
        workers = [
            _worker(
                real_app,
                name=name,
                queue=EXECUTIONS_QUEUE,
                concurrency=concurrency,
                polling=polling,
            ),
            _worker(real_app, name=name, queue=MAINTENANCE_QUEUE, concurrency=1, polling=polling),
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
            for worker in workers:
                worker.stop()

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        logger.info(
            "worker %s: %d execution slot(s), polling every %.2fs", name, concurrency, polling
        )
        running = asyncio.ensure_future(asyncio.gather(*(worker.run() for worker in workers)))
        if await _wait_or_force(running, stop, force, shutdown_timeout):
            await _stop_hub(hub)
            running.result()  # a worker that died of an error fails the process
            return 0
        # Abandon the running jobs. Letting asyncio.run cancel them would store them as
        # cancelled; instead deregister (their jobs lose their worker, so the next sweep on any
        # worker restarts them) and leave at once, as a killed worker would.
        for worker in workers:
            if worker.worker_id is not None:
                with contextlib.suppress(Exception):
                    await real_app.job_manager.unregister_worker(worker.worker_id)
        logger.warning("shutdown timeout: left the running jobs to other workers")
        logging.shutdown()
        os._exit(FORCED_EXIT)


async def _stop_hub(hub: Any) -> None:
    # The hub's stop() is sync (a listener thread) or async, depending on its version.
    result = hub.stop()
    if inspect.isawaitable(result):
        await result


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
