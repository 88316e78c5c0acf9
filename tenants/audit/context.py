"""The request being served, for audit entries written where no request is at hand (model
signals of the tenant's users and groups, the admin's own log entries).

:class:`AuditRequestMiddleware` only remembers the request in a context variable: nothing is
read from it (no session, no user) unless an entry is written.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

_current: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar(
    "audit_request", default=None
)


class AuditRequestMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _current.set(request)
        try:
            return self.get_response(request)
        finally:
            _current.reset(token)


def current_request() -> HttpRequest | None:
    return _current.get()


def current_actor(default: str = "system") -> str:
    """Who the current request is: an admin session's user, an API principal, else
    ``default`` (a command, a shell, a migration)."""
    request = _current.get()
    user = getattr(request, "user", None) if request is not None else None
    if user is None:
        return default
    audit_actor = getattr(user, "audit_actor", None)  # an API principal
    if isinstance(audit_actor, str):
        return audit_actor
    if getattr(user, "is_authenticated", False):
        return f"user:{user.get_username()}"
    return default
