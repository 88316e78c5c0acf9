"""The admin's "test run": runs an agent and streams its stored events to the operator's browser.

A thin transport like any other: the signed-in operator becomes a principal of the tenant (its
role from the operator's Django permissions, ``tenants.operators``: running needs
``agents.run_agent``), ``agents.core.start_run`` starts the run (same
validation, refusals and audit trail as the API), and the response frames the run's *stored*
event log as NDJSON, one JSON object per line: ``{"type": "execution", "execution_id",
"events_url"}`` first, then every stored event with its ``seq``, then ``{"type": "stored",
"execution_id", "status"}``. A browser that lost the stream reads the rest from ``events_url``
(``?after=<last seq>``). The run belongs to the request: if the browser goes away, it is
cancelled (stored as ``cancelled``).

Async views (``StreamingHttpResponse`` over an async generator streams event by event under
daphne); they authenticate the staff session themselves (``admin_view`` wraps sync views only).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_POST

from agents.core import DatabaseUnavailable, RunHandle, StoredEvent, follow_events, start_run
from agents.models import Execution
from agents.selectors import execution_get
from agents.services.agents import agent_get
from config.errors import DomainError, error_response
from config.middleware import request_id_for
from tenants.access import authorize_async
from tenants.context import in_schema
from tenants.models import Tenant
from tenants.operators import operator_role
from tenants.principals import Principal
from tenants.roles import Permission

logger = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"


def operator_principal(user: User | AnonymousUser, tenant: Tenant) -> Principal | None:
    """The tenant principal a signed-in operator acts as (its role from the operator's Django
    permissions, ``tenants.operators``), or None. Sync: reads permissions in the tenant."""
    role = operator_role(user)
    if role is None:
        return None
    return Principal(
        kind="user",
        identifier=user.get_username(),
        role=role,
        tenant_id=tenant.pk,
        tenant_slug=tenant.slug,
        schema_name=tenant.schema_name,
    )


async def _operator(request: HttpRequest, permission: Permission) -> Principal:
    """The operator's principal, allowed ``permission`` (denials audited), or ``Refused``."""
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        raise Refused(error_response(request, 404, "not_found", "Not found."))
    user = await request.auser()
    principal = await in_schema(tenant.schema_name, operator_principal, user, tenant)
    if principal is None:
        raise Refused(error_response(request, 403, "permission_denied", "Staff only."))
    try:
        await authorize_async(
            principal, permission, request=request, method=request.method, path=request.path
        )
    except DomainError as refused:
        raise Refused(
            error_response(request, refused.status, refused.code, refused.message)
        ) from None
    return principal


class Refused(Exception):
    def __init__(self, response: HttpResponse) -> None:
        self.response = response


def _line(item: dict[str, Any]) -> str:
    return json.dumps(item, default=str) + "\n"


def event_line(event: StoredEvent) -> str:
    return _line({"seq": event.seq, "type": event.type, **event.data})


def _status(execution_id: str) -> str:
    return str(execution_get(execution_id).status)


async def _follow(schema_name: str, execution_id: str, after: int) -> AsyncIterator[str]:
    try:
        async for event in follow_events(schema_name, execution_id, after=after):
            if event is not None:
                yield event_line(event)
    except DatabaseUnavailable:
        yield _line({"type": "error", "code": "stream_interrupted", "retryable": True})
        return
    status = await in_schema(schema_name, _status, execution_id)
    yield _line({"type": "stored", "execution_id": execution_id, "status": status})


@csrf_protect
@require_POST
async def test_run_stream(request: HttpRequest, object_id: str) -> HttpResponseBase:
    try:
        principal = await _operator(request, Permission.EXECUTIONS_RUN)
    except Refused as refused:
        return refused.response
    try:
        context = json.loads(request.POST.get("context") or "{}")
    except json.JSONDecodeError:
        return error_response(request, 400, "validation_error", "context: not valid JSON")
    body = {"context": context, "input": {"message": request.POST.get("message", "")}}
    return StreamingHttpResponse(
        _run(principal, object_id, body, request_id_for(request)),
        content_type=NDJSON,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _run(
    principal: Principal, agent_ref: str, body: dict[str, Any], request_id: str
) -> AsyncIterator[str]:
    # Started here, inside the response, so that the run belongs to this request: a browser
    # that goes away cancels it.
    handle: RunHandle | None = None
    finished = False
    try:
        handle = await start_run(
            principal=principal, agent_ref=agent_ref, body=body, request_id=request_id
        )
        yield _line(
            {
                "type": "execution",
                "execution_id": handle.execution_id,
                "events_url": reverse(
                    "tenant_admin:agents_agent_test_run_events",
                    args=[handle.agent_id, handle.execution_id],
                ),
            }
        )
        async for line in _follow(principal.schema_name, handle.execution_id, 0):
            yield line
        finished = True
    except DomainError as exc:
        yield _line({"type": "error", "code": exc.code, "message": exc.message})
    except Exception:
        # Without this the stream just ends, and the operator sees an empty answer.
        logger.exception("admin test run failed")
        yield _line(
            {"type": "error", "code": "server_error", "message": "The run failed unexpectedly."}
        )
    finally:
        if handle is not None and not finished:
            handle.cancel()  # the browser went away: stop the upstream call too


def _execution_of(agent_ref: str, execution_id: str) -> Execution:
    return execution_get(execution_id, agent=agent_get(agent_ref))


@require_GET
async def test_run_events(
    request: HttpRequest, object_id: str, execution_id: str
) -> HttpResponseBase:
    """The stored events of a test run after ``?after=N``, then live ones (a browser resuming)."""
    try:
        principal = await _operator(request, Permission.EXECUTIONS_READ)
    except Refused as refused:
        return refused.response
    try:
        after = max(int(request.GET.get("after") or 0), 0)
    except ValueError:
        return error_response(request, 400, "validation_error", "after: must be an integer")
    try:
        await in_schema(principal.schema_name, _execution_of, object_id, execution_id)
    except DomainError as exc:
        return error_response(request, exc.status, exc.code, exc.message)
    return StreamingHttpResponse(
        _follow(principal.schema_name, execution_id, after),
        content_type=NDJSON,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
