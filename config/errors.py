"""One JSON error shape for the whole platform.

``{"error": {"code", "message", "details"}, "request_id"}`` with the matching HTTP status, from
DRF views (``api_exception_handler``), from middleware (``error_response``) and from Django's
own 404/500 handlers.

While the database is unreachable (a restart, a failover, a pooler cut) every path answers
503 ``database_unavailable`` with ``Retry-After`` instead of a 500: DRF views through
``api_exception_handler`` (the SSE views' ``error_json`` too), other views through
``config.middleware.DatabaseOutageMiddleware.process_exception``, and middleware (tenant
resolution reads the public schema before any view) through ``handler500``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_default_handler

from config.database import database_outage, database_unavailable, discard_broken_connections
from config.middleware import request_id_for

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "database_unavailable"


class DomainError(Exception):
    """Base of errors that services raise on purpose; each maps to one HTTP status and code."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        # Response headers that belong to this error over HTTP (Retry-After, ...).
        self.headers = headers or {}


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class ValidationFailed(DomainError):
    status = 400
    code = "validation_error"


class LimitExceeded(DomainError):
    """A plan's limit or quota says no (429, with Retry-After); ``code`` names which one."""

    status = 429
    code = "limit_exceeded"

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        status: int = 429,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        all_headers = dict(headers or {})
        if retry_after is not None:
            all_headers.setdefault("Retry-After", str(max(int(retry_after + 0.999), 1)))
        super().__init__(message, details=details, headers=all_headers)
        self.code = code
        self.status = status


class PermissionRefused(DomainError):
    status = 403
    code = "permission_denied"


def error_body(
    request: HttpRequest | None, code: str, message: str, details: Any = None
) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": message, "details": details or {}},
        "request_id": request_id_for(request) if request is not None else "",
    }


OPENAI_PATH_PREFIX = "/v1/"


def _openai_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error"
    )


def error_response(
    request: HttpRequest | None,
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    body = error_body(request, code, message, details)
    if request is not None and request.path.startswith(OPENAI_PATH_PREFIX):
        # OpenAI clients read error.type and error.param (tenant resolution answers these
        # paths before any view of the OpenAI-compatible endpoint runs).
        body["error"]["type"] = _openai_type(status)
        body["error"]["param"] = None
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def database_failed(exc: BaseException) -> None:
    """A request met an unreachable database: say so once (one warning when requests start
    failing, one when they stop), and drop the pool's dead connections so that the next
    requests do not meet them too."""
    database_outage.failed(exc)
    discard_broken_connections()


def database_unavailable_body(request: HttpRequest | None) -> tuple[dict[str, Any], int, str]:
    """The 503 answered while the database is unreachable: body, status, Retry-After."""
    retry_after = settings.DATABASE_RETRY_AFTER_SECONDS
    body = error_body(
        request,
        DATABASE_UNAVAILABLE,
        "The database is unavailable; try again shortly.",
        {"retry_after_seconds": retry_after},
    )
    return body, 503, str(retry_after)


def database_unavailable_response(request: HttpRequest | None, exc: BaseException) -> JsonResponse:
    database_failed(exc)
    body, status, retry_after = database_unavailable_body(request)
    response = JsonResponse(body, status=status)
    response["Retry-After"] = retry_after
    # Logged once per outage (above), not once per request with a traceback by Django.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


_DRF_CODES: dict[type[Exception], tuple[str, str]] = {
    drf.NotAuthenticated: ("not_authenticated", "Authentication credentials were not provided."),
    drf.AuthenticationFailed: ("not_authenticated", "Invalid credentials."),
    drf.PermissionDenied: ("permission_denied", "Your role does not allow this operation."),
    drf.NotFound: ("not_found", "Not found."),
    drf.MethodNotAllowed: ("method_not_allowed", "Method not allowed."),
    drf.NotAcceptable: ("not_acceptable", "Not acceptable."),
    drf.UnsupportedMediaType: (
        "unsupported_media_type",
        "Send a JSON body (Content-Type: application/json).",
    ),
    drf.Throttled: ("throttled", "Too many requests."),
    drf.ParseError: ("parse_error", "Malformed request body."),
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    request = context.get("request")
    django_request = getattr(request, "_request", request)
    if isinstance(exc, DomainError):
        return Response(
            error_body(django_request, exc.code, exc.message, exc.details),
            status=exc.status,
            headers=exc.headers or None,
        )
    if database_unavailable(exc):
        database_failed(exc)
        body, status, retry_after = database_unavailable_body(django_request)
        return Response(body, status=status, headers={"Retry-After": retry_after})
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body(django_request, "payload_too_large", "Request body is too large."),
            status=413,
        )
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf.PermissionDenied()
    response = drf_default_handler(exc, context)
    if response is None:
        return None  # unexpected: Django's 500 handler answers, with the same shape
    if isinstance(exc, drf.ValidationError):
        code, message, details = (
            "validation_error",
            _first_validation_message(exc.detail),
            exc.detail,
        )
    else:
        code, default_message = next(
            (value for kind, value in _DRF_CODES.items() if isinstance(exc, kind)),
            ("error", "Request failed."),
        )
        detail = getattr(exc, "detail", None)
        message = str(detail) if isinstance(detail, str) and detail else default_message
        details = {}
    response.data = error_body(django_request, code, message, details)
    return response


def _first_validation_message(detail: Any, path: str = "") -> str:
    """'input.message: This field is required.' — names the field that was wrong."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            sub = f"{path}.{key}" if path else str(key)
            if key == "non_field_errors":
                sub = path
            return _first_validation_message(value, sub)
    if isinstance(detail, list) and detail:
        return _first_validation_message(detail[0], path)
    return f"{path}: {detail}" if path else str(detail)


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(request, 404, "not_found", "Not found.")


def handler500(request: HttpRequest) -> JsonResponse:
    # Django calls this inside its ``except`` block, so the error is still at hand. That is
    # how a database error raised by a middleware (tenant resolution queries before any
    # view runs) becomes a 503: Django turns a middleware's exception into a response
    # right where it is raised, so no outer middleware ever sees it.
    exc = sys.exc_info()[1]
    if exc is not None and database_unavailable(exc):
        return database_unavailable_response(request, exc)
    logger.error("unhandled error", extra={"request_id": request_id_for(request)})
    return error_response(request, 500, "server_error", "Internal server error.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(request, 403, "permission_denied", "Forbidden.")


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(request, 400, "bad_request", "Bad request.")
