"""Admin logins, audited where they happened: a tenant's admin in the tenant's log, the
platform admin in the platform log. Django's auth signals are the one place every login
form (and ``authenticate`` with a request) passes through."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db import connection
from django.http import HttpRequest

from config.middleware import request_id_for
from tenants.audit.models import AuditOutcome
from tenants.audit.services import (
    audit_auth_failure,
    audit_record,
    auth_failure_budget,
    client_address,
    platform_audit_record,
)

# The platform log's key in the failure budget: never a tenant schema's name.
PLATFORM_BUDGET_KEY = "public"
MAX_USERNAME_CHARS = 150


def _tenant_schema() -> str | None:
    # The schema the login form's user was looked up in (the tenant middleware set it for
    # the request): that is whose admin it was. None: the platform's.
    schema = str(getattr(connection, "schema_name", "public"))
    return None if schema == "public" else schema


def login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any
) -> None:
    """A refused admin login. Anyone can send these by the million, so they are sampled by
    the same per-minute budget as unproven credentials (``audit_auth_failure``)."""
    if request is None:
        return  # authenticate() without a request: not an interface's login
    username = str(credentials.get("username", ""))[:MAX_USERNAME_CHARS]
    schema = _tenant_schema()
    if schema is not None:
        audit_auth_failure(
            schema_name=schema,
            reason="admin login refused",
            proven=False,
            path=request.path,
            client=client_address(request.META),
            transport="admin",
            request_id=request_id_for(request),
            user_agent=request.headers.get("User-Agent", ""),
            extra={"username": username},
        )
        return
    suppressed = auth_failure_budget.admit(
        PLATFORM_BUDGET_KEY, settings.AUDIT_AUTH_FAILURES_PER_MINUTE
    )
    if suppressed is None:
        return
    details: dict[str, Any] = {"username": username, "path": request.path}
    if suppressed:
        details["suppressed"] = suppressed
    platform_audit_record(
        actor="anonymous",
        action="auth.failure",
        outcome=AuditOutcome.FAILURE,
        request=request,
        details=details,
    )


def logged_in(sender: Any, request: HttpRequest | None, user: Any, **_: Any) -> None:
    if request is None:
        return
    actor = f"user:{user.get_username()}"
    schema = _tenant_schema()
    if schema is not None:
        audit_record(schema_name=schema, actor=actor, action="admin.login", request=request)
    else:
        platform_audit_record(actor=actor, action="admin.login", request=request)


def connect() -> None:
    user_login_failed.connect(login_failed, dispatch_uid="audit-login-failed")
    user_logged_in.connect(logged_in, dispatch_uid="audit-logged-in")
