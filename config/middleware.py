"""Request id: taken from ``X-Request-ID`` when the caller sent a sane one, made up otherwise,
stored on the request (errors and audit entries quote it) and echoed on every response.

Database outages: ``DatabaseOutageMiddleware`` turns a view's "database unreachable" error
into the platform's 503 (see ``config.errors``) and makes sure every 503 says when to retry.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from django.db.backends.signals import connection_created
from django.http import HttpRequest, HttpResponse

from config.database import database_outage, database_unavailable
from config.logs import bind_request

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# One line per request, in the structured format, with the request's ids (a server's own access
# log is plain text without them: production runs the server without one, see
# docs/operations/observability.md).
access_logger = logging.getLogger("config.access")


class IdentifiedRequest(HttpRequest):
    """A request as ``RequestIdMiddleware`` leaves it (a type only: Django's request classes have
    no slot for the attribute)."""

    request_id: str


def safe_request_id(given: str) -> str:
    """The caller's request id if it is safe to log and echo; a new one otherwise (too long,
    control characters, header injection are replaced, never echoed)."""
    return given if _SAFE_ID.match(given) else uuid.uuid4().hex


def request_id_for(request: HttpRequest) -> str:
    return getattr(request, "request_id", "") or ""


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.log_requests = settings.LOG_REQUESTS

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        given = request.headers.get("X-Request-ID", "")
        identified = cast(IdentifiedRequest, request)  # it is, from the next line on
        identified.request_id = safe_request_id(given)
        # Every log line of the request carries it (config.logs).
        bind_request(identified.request_id)
        response = self.get_response(request)
        response["X-Request-ID"] = identified.request_id
        if self.log_requests and access_logger.isEnabledFor(logging.INFO):
            access_logger.info(
                "%s %s %d %.1fms",
                request.method,
                request.path,
                response.status_code,
                (time.perf_counter() - started) * 1000,
            )
        return response


def _database_reached(sender: Any, connection: Any, **kwargs: Any) -> None:
    # Sent on every connection Django opens (every checkout from the pool): the first one
    # after an outage ends it in the log.
    database_outage.recovered()


class DatabaseOutageMiddleware:
    """While the database is unreachable: a view's database error becomes 503
    ``database_unavailable`` with ``Retry-After`` (not a 500), and any 503 that lacks a
    ``Retry-After`` gets one (the SSE views build their error responses from the DRF
    handler's body and status alone).

    Errors raised by a middleware (tenant resolution) never reach another middleware: Django
    turns them into a response where they are raised. ``config.errors.handler500`` maps those.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        connection_created.connect(_database_reached, dispatch_uid="config.database-reached")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == 503 and not response.has_header("Retry-After"):
            response["Retry-After"] = str(settings.DATABASE_RETRY_AFTER_SECONDS)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not database_unavailable(exception):
            return None
        from config.errors import database_unavailable_response  # config.errors imports us

        return database_unavailable_response(request, exception)
