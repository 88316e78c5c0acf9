"""Server-sent events: run an agent as a stream, or attach to an execution's stream.

A thin transport: the tenant middleware fixed the principal, ``tenants.access`` checks the
permission, ``agents.core.start_run`` starts the run (same validation, idempotency and
refusals as every interface), and this module frames the core's stored events.

These are plain *async* Django views (DRF has no async views): under daphne a
``StreamingHttpResponse`` over an async generator is sent event by event, and a client that goes
away raises ``CancelledError`` in the generator.

What a client reads is exactly the stored event log: ``id:`` is the stored sequence number, so
``Last-Event-ID`` / ``?after=N`` resume with no loss and no duplicates. Wire format (the
original's names): ``chunk`` and ``thinking`` carry their text as the data (multi-line text as
several ``data:`` lines, per the SSE spec); ``tool_call``, ``tool_result``, ``complete`` (the
blocking response JSON), ``error``, ``reset`` (drop the text of chunks from
``discard_from_sequence`` on: that attempt is being retried) and our ``execution.started``,
``usage`` and ``cancelled`` carry JSON; the stream ends with ``data: [DONE]``. It starts with a
``: stream open`` comment (the headers go out at once), and ``: keep-alive`` comments are sent
after ``SSE_HEARTBEAT_SECONDS`` of silence. If the database stays away
longer than ``STREAM_DB_PATIENCE_SECONDS``, the stream ends with an ``error`` event *without*
an ``id`` (``code: stream_interrupted``, ``retryable: true``) and no ``[DONE]``: reconnect with
``Last-Event-ID`` and nothing is lost.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from agents.api.serializers import execution_response
from agents.core import REPLAYED_HEADER, DatabaseUnavailable, RunHandle, StoredEvent, start_run
from agents.core.follow import follow_events
from agents.core.idempotency import HEADER as IDEMPOTENCY_HEADER
from agents.core.streams import leased, open_stream
from agents.models import Execution
from agents.selectors import execution_get
from agents.services.agents import agent_get
from config.errors import ValidationFailed, api_exception_handler, error_response
from config.middleware import request_id_for
from tenants.access import authorize_async
from tenants.context import in_schema
from tenants.principals import Principal
from tenants.roles import Permission

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
TEXT_EVENTS = frozenset({"chunk", "thinking"})
# Tells EventSource clients how soon to reconnect after a stream ended early (ms).
RECONNECT_MS = 2000
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


# ---- request handling shared by the SSE views (these and workflow_bridge.streams) ----


class Refused(Exception):
    def __init__(self, response: HttpResponse) -> None:
        self.response = response


async def require_principal(request: HttpRequest, permission: Permission) -> Principal:
    principal = getattr(request, "principal", None)
    if not isinstance(principal, Principal):
        raise Refused(
            error_response(
                request,
                401,
                "not_authenticated",
                "Authentication credentials were not provided.",
                headers={"WWW-Authenticate": 'Bearer realm="api"'},
            )
        )
    await authorize_async(
        principal, permission, request=request, method=request.method, path=request.path
    )
    return principal


def require_method(request: HttpRequest, method: str) -> None:
    if request.method != method:
        response = error_response(request, 405, "method_not_allowed", "Method not allowed.")
        response["Allow"] = method
        raise Refused(response)


def _json_body(request: HttpRequest) -> Any:
    raw = request.body  # RequestDataTooBig (413) when over DATA_UPLOAD_MAX_MEMORY_SIZE
    if not raw.strip():
        return {}
    if request.content_type != "application/json":
        raise Refused(
            error_response(
                request,
                415,
                "unsupported_media_type",
                "Send a JSON body (Content-Type: application/json).",
            )
        )
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Refused(
            error_response(request, 400, "parse_error", "Malformed request body.")
        ) from None


def error_json(request: HttpRequest, exc: Exception) -> HttpResponse:
    """The platform's error shape for whatever a view raised (DomainError, DRF validation,
    RequestDataTooBig); anything else propagates to Django's 500 handler."""
    if isinstance(exc, Refused):
        return exc.response
    handled = api_exception_handler(exc, {"request": request})
    if handled is None:
        raise exc
    response = JsonResponse(handled.data, status=handled.status_code)
    for name, value in handled.items():
        if name.lower() != "content-type":
            response[name] = value
    return response


def stream_cursor(request: HttpRequest) -> int:
    raw = request.headers.get("Last-Event-ID") or request.GET.get("after") or "0"
    try:
        after = int(raw)
    except ValueError:
        raise ValidationFailed("after: Last-Event-ID / after must be an integer") from None
    if after < 0:
        raise ValidationFailed("after: must not be negative")
    return after


def _disconnect_policy(request: HttpRequest) -> str | None:
    policy = request.GET.get("on_disconnect")
    if policy is not None and policy not in {"cancel", "continue"}:
        raise ValidationFailed("on_disconnect: must be 'cancel' or 'continue'")
    return policy


# ---- SSE framing ----


def frame(seq: int | None, event: str, data: str) -> bytes:
    lines = [f"id: {seq}"] if seq is not None else []
    lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    return ("\n".join(lines) + "\n\n").encode()


def _ended(execution_id: str) -> Execution:
    return execution_get(execution_id)


async def event_frame(schema: str, execution_id: str, event: StoredEvent) -> bytes:
    if event.type in TEXT_EVENTS:
        text = event.data.get("text") if event.type == "chunk" else event.data.get("message")
        return frame(event.seq, event.type, str(text or ""))
    payload: dict[str, Any] = dict(event.data)
    if event.type == "complete":
        # The terminal status was stored with this event: the row is final.
        payload = execution_response(await in_schema(schema, _ended, execution_id))
    elif event.type == "error":
        payload = {
            "execution_id": execution_id,
            "error": event.data.get("message"),
            "code": event.data.get("code"),
        }
    elif event.type in ("cancelled", "reset"):
        payload = {"execution_id": execution_id, **payload}
    return frame(event.seq, event.type, json.dumps(payload, separators=(",", ":"), default=str))


def interrupted(execution_id: str) -> bytes:
    payload = {
        "execution_id": execution_id,
        "code": "stream_interrupted",
        "error": "The stream was interrupted (database unavailable); reconnect with Last-Event-ID.",
        "retryable": True,
    }
    return f"retry: {RECONNECT_MS}\n".encode() + frame(
        None, "error", json.dumps(payload, separators=(",", ":"))
    )


OPENED = b": stream open\n\n"


async def sse_events(schema: str, execution_id: str, *, after: int) -> AsyncIterator[bytes]:
    """Stored events with ``seq > after``, then live ones, then ``[DONE]``."""
    # A comment first: the server sends the response headers with the first body bytes, so a
    # client attaching to a quiet run would otherwise wait up to a heartbeat for its 200 (and a
    # proxy with a header timeout would give up).
    yield OPENED
    try:
        async for event in follow_events(
            schema, execution_id, after=after, idle=settings.SSE_HEARTBEAT_SECONDS
        ):
            if event is None:
                yield b": keep-alive\n\n"
                continue
            yield await event_frame(schema, execution_id, event)
    except DatabaseUnavailable:
        yield interrupted(execution_id)
        return
    yield DONE


async def run_stream(handle: RunHandle, *, cancel_on_disconnect: bool) -> AsyncIterator[bytes]:
    finished = False
    try:
        async for chunk in sse_events(handle.schema_name, handle.execution_id, after=0):
            yield chunk
        finished = True
    finally:
        # Reached early only when the client went away (CancelledError / aclose).
        if not finished and cancel_on_disconnect:
            handle.cancel()


def sse_response(
    body: AsyncIterator[bytes], location: str, **headers: str
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not buffer the stream
    response["Location"] = location
    for name, value in headers.items():
        response[name] = value
    return response


def stream_location(execution: Execution) -> str:
    return f"/agents/{execution.agent_id}/executions/{execution.id}/stream"


# ---- views ----


@csrf_exempt
async def agent_execute_stream(request: HttpRequest, agent_id: str) -> HttpResponseBase:
    """``POST /agents/{agent_id}/execute/stream``: run live, stream the event log.

    ``on_disconnect`` (query or ``execution_config``): ``cancel`` (default) stops the run when
    the client goes away; ``continue`` lets it finish (attach again to read the rest). An
    ``Idempotency-Key`` repeat gets the first run's stream from its start, never a second run.
    """
    try:
        require_method(request, "POST")
        principal = await require_principal(request, Permission.EXECUTIONS_RUN)
        body = _json_body(request)
        policy = _disconnect_policy(request)
        # The stream's place first: a refused stream must not have started a run.
        lease = await open_stream(principal)
        try:
            handle = await start_run(
                principal=principal,
                agent_ref=agent_id,
                body=body,
                mode="streamed",
                request_id=request_id_for(request),
                idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
            )
        except BaseException:
            await lease.close()
            raise
    except Exception as exc:
        return error_json(request, exc)
    policy = policy or handle.on_disconnect or "cancel"
    headers = {REPLAYED_HEADER: "true"} if handle.replayed else {}
    return sse_response(
        leased(run_stream(handle, cancel_on_disconnect=policy == "cancel"), lease),
        stream_location(handle.execution),
        **headers,
    )


def _attach_target(agent_ref: str, execution_id: str) -> Execution:
    return execution_get(execution_id, agent=agent_get(agent_ref))


async def execution_stream_attach(
    request: HttpRequest, agent_id: str, execution_id: str
) -> HttpResponseBase:
    """``GET /agents/{agent_id}/executions/{execution_id}/stream``: replay the stored events
    after the cursor (``Last-Event-ID`` or ``?after=N``), then follow until the end."""
    try:
        require_method(request, "GET")
        principal = await require_principal(request, Permission.EXECUTIONS_READ)
        after = stream_cursor(request)
        schema = principal.schema_name
        execution = await in_schema(schema, _attach_target, agent_id, execution_id)
        lease = await open_stream(principal)
    except Exception as exc:
        return error_json(request, exc)
    return sse_response(
        leased(sse_events(schema, execution.id, after=after), lease), stream_location(execution)
    )
