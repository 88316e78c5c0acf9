"""Server-sent events of workflows: ``GET /resources/{resource_id}/events/stream`` and
``GET /workflows/{workflow_id}/events/stream`` (id or slug).

A thin transport over ``workflow_bridge.events``, with the request handling of the execution
streams (``agents.api.sse``): the tenant middleware fixed the principal, ``tenants.access``
checks ``workflows.read``, the resource or workflow is looked up in the caller's schema only
(another tenant's id is a 404 like a missing one), refusals use the platform's error shape.

What a client reads is the stored event log: ``id:`` is the stream's cursor (the resource's
``seq`` on a resource stream, ``workflow_seq`` on a workflow stream), ``event:`` the event type
(``resource_created``, ``resource_activity_executed``, ``agent_triggered``, …) and ``data:``
the event as JSON (``workflow_bridge.events.WorkflowEventPayload``). ``Last-Event-ID`` or
``?after=N`` resume after a cursor with no loss and no repeat. The streams do not end (a
resource can always be moved again): ``: keep-alive`` comments are sent after
``SSE_HEARTBEAT_SECONDS`` of silence. If the database stays away longer than
``STREAM_DB_PATIENCE_SECONDS`` the stream ends with an ``error`` event without ``id``
(``code: stream_interrupted``, ``retryable: true``): reconnect with ``Last-Event-ID``. The
stream opens with ``retry: 2000`` (how soon an EventSource reconnects).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from agents.api.sse import (
    RECONNECT_MS,
    error_json,
    frame,
    require_method,
    require_principal,
    sse_response,
    stream_cursor,
)
from agents.core import DatabaseUnavailable
from tenants.context import in_schema
from tenants.roles import Permission
from workflow_bridge.events import (
    WorkflowEvent,
    follow_resource_events,
    follow_workflow_events,
)
from workflow_bridge.selectors import resource_get, workflow_get


def _json(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"), default=str)


async def sse_workflow_events(
    events: AsyncIterator[WorkflowEvent | None],
    cursor: Callable[[WorkflowEvent], int],
    subject: dict[str, str],
) -> AsyncIterator[bytes]:
    """Frame followed events (``subject`` names the stream in an interruption notice)."""
    # Sent at once: daphne holds the response headers back until the first body bytes, and a
    # quiet stream would otherwise look dead to its client until the first keep-alive.
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    try:
        async for event in events:
            if event is None:
                yield b": keep-alive\n\n"
                continue
            yield frame(cursor(event), event.type, _json(event.payload))
    except DatabaseUnavailable:
        notice = {
            **subject,
            "code": "stream_interrupted",
            "error": "The stream was interrupted (database unavailable); "
            "reconnect with Last-Event-ID.",
            "retryable": True,
        }
        yield f"retry: {RECONNECT_MS}\n".encode() + frame(None, "error", _json(notice))


async def resource_events_stream(request: HttpRequest, resource_id: str) -> HttpResponseBase:
    """``GET /resources/{resource_id}/events/stream``: the resource's stored events after the
    cursor, then live ones."""
    try:
        require_method(request, "GET")
        principal = await require_principal(request, Permission.WORKFLOWS_READ)
        after = stream_cursor(request)
        schema = principal.schema_name
        resource = await in_schema(schema, resource_get, resource_id)
    except Exception as exc:
        return error_json(request, exc)
    events = follow_resource_events(
        schema, resource.pk, after=after, idle=settings.SSE_HEARTBEAT_SECONDS
    )
    return sse_response(
        sse_workflow_events(events, lambda e: e.seq, {"resource_id": resource.pk}),
        f"/resources/{resource.pk}/events/stream",
    )


async def workflow_events_stream(request: HttpRequest, workflow_id: str) -> HttpResponseBase:
    """``GET /workflows/{workflow_id}/events/stream``: the events of all the workflow's
    resources in the order they were committed (``workflow_seq``), then live ones."""
    try:
        require_method(request, "GET")
        principal = await require_principal(request, Permission.WORKFLOWS_READ)
        after = stream_cursor(request)
        schema = principal.schema_name
        workflow = await in_schema(schema, workflow_get, workflow_id)
    except Exception as exc:
        return error_json(request, exc)
    events = follow_workflow_events(
        schema, workflow.pk, after=after, idle=settings.SSE_HEARTBEAT_SECONDS
    )
    return sse_response(
        sse_workflow_events(events, lambda e: e.workflow_seq, {"workflow_id": workflow.pk}),
        f"/workflows/{workflow.pk}/events/stream",
    )
