"""``python manage.py worker``: run background executions and the periodic sweeper
(``agents.worker``: how the process works and rides out database outages)."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from procrastinate.contrib.django import app

from agents.worker.process import serve
from agents.worker.resilience import worker_connector
from config.database import (
    database_outage,
)


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
        outage = database_outage
        outage.label = f"worker {name}"
        # The Django connector suits web requests; a worker needs its own pool and LISTEN.
        with app.replace_connector(worker_connector(outage)) as real_app:
            code = asyncio.run(
                serve(
                    real_app,
                    name=name,
                    concurrency=concurrency,
                    polling=polling,
                    shutdown_timeout=shutdown or None,
                    outage=outage,
                )
            )
        if code:
            raise SystemExit(code)
