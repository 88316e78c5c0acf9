"""Request id: taken from ``X-Request-ID`` when the caller sent a sane one, made up otherwise,
stored on the request (errors and audit entries quote it) and echoed on every response."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import cast

from django.http import HttpRequest, HttpResponse

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class IdentifiedRequest(HttpRequest):
    """A request as ``RequestIdMiddleware`` leaves it (a type only: Django's request classes have
    no slot for the attribute)."""

    request_id: str


def request_id_for(request: HttpRequest) -> str:
    return getattr(request, "request_id", "") or ""


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get("X-Request-ID", "")
        identified = cast(IdentifiedRequest, request)  # it is, from the next line on
        # Anything odd (too long, control characters, header injection) is replaced, not echoed.
        identified.request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        response = self.get_response(request)
        response["X-Request-ID"] = identified.request_id
        return response
