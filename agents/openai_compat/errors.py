"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

The platform's own refusals (``DomainError`` from the core, the access module, the plan's
limits) keep their status, code, message and headers (``Retry-After``); only the frame is
OpenAI's, so that every OpenAI client raises the error class it expects (401
``AuthenticationError``, 404 ``NotFoundError``, 429 ``RateLimitError``...). A failed run is
mapped to the status a gateway answers for that upstream failure.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from config.errors import DomainError
from config.middleware import request_id_for

EXECUTION_HEADER = "X-Execution-ID"

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}

# How a run that failed upstream is answered: (status, type).
_RUN_FAILURES = {
    "rate_limit": (429, "rate_limit_error"),
    "budget_exceeded": (429, "insufficient_quota"),
    "timeout": (504, "timeout"),
    "circuit_open": (503, "server_error"),
    "cancelled": (499, "cancelled"),
}


class OpenAIError(Exception):
    """A refusal this transport raises itself (a wire-format problem: 400 naming ``param``)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        type_: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.code = code
        self.type = type_ or _TYPES.get(status, "invalid_request_error")


def unsupported(param: str, why: str = "is not supported by this endpoint") -> OpenAIError:
    return OpenAIError(f"{param}: {why}", param=param, code="unsupported_parameter")


def invalid(param: str, message: str) -> OpenAIError:
    return OpenAIError(f"{param}: {message}", param=param, code="invalid_value")


def error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return _TYPES.get(status, "invalid_request_error")


def error_json(
    request: HttpRequest | None,
    status: int,
    message: str,
    *,
    type_: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    body: dict[str, Any] = {
        "error": {
            "message": message,
            "type": type_ or error_type(status),
            "param": param,
            "code": code,
        }
    }
    if request is not None:
        body["request_id"] = request_id_for(request)
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _param_of(exc: DomainError) -> str | None:
    """The client's parameter a core refusal names (``input.parameters.top_p`` → ``top_p``)."""
    for path in exc.details or {}:
        if not isinstance(path, str):
            continue
        for prefix in ("input.parameters.", "execution_config."):
            if path.startswith(prefix):
                return path[len(prefix) :]
        return path
    return None


def domain_error(request: HttpRequest, exc: DomainError) -> JsonResponse:
    return error_json(
        request,
        exc.status,
        exc.message,
        param=_param_of(exc),
        code=exc.code,
        headers=dict(exc.headers),
    )


def run_failure(
    error_code: str, message: str, execution_id: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) for a run that ended without an answer."""
    status, type_ = _RUN_FAILURES.get(error_code, (502, "server_error"))
    body = {
        "error": {
            "message": message or f"the run ended with {error_code}",
            "type": type_,
            "param": None,
            "code": error_code or "upstream_error",
            "execution_id": execution_id,
        }
    }
    headers = {EXECUTION_HEADER: execution_id}
    if status in (429, 503):
        headers["Retry-After"] = "1"
    return status, body, headers
