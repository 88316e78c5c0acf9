"""Probes for load balancers. They bypass tenant resolution (see the tenant middleware)."""

from __future__ import annotations

import psycopg
from django.conf import settings
from django.db import connection
from django.db.utils import Error as DatabaseError
from django.http import HttpRequest, JsonResponse

from config.database import database_outage
from config.errors import database_failed


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving; touches nothing else."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """The database answers, within READYZ_TIMEOUT_SECONDS; a load balancer stops sending
    traffic while it does not (the 503 also carries Retry-After)."""
    try:
        _ping_database(settings.READYZ_TIMEOUT_SECONDS)
    except (DatabaseError, psycopg.Error) as exc:
        database_failed(exc)
        return JsonResponse({"status": "unavailable", "database": "unreachable"}, status=503)
    database_outage.recovered()
    return JsonResponse({"status": "ok", "database": "ok"})


def _ping_database(timeout: float) -> None:
    pool = getattr(connection, "pool", None)
    if pool is None:
        # Per-thread connections: bounded by DATABASE_CONNECT_TIMEOUT_SECONDS.
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return
    # Through the process's own pool (so "ready" means this process can get a connection),
    # with a shorter wait than a request's: a probe must answer before the balancer gives up.
    pool.open()
    with pool.connection(timeout=timeout) as conn:
        conn.execute("SELECT 1")
