"""Server-sent events: run an agent as a stream, or attach to an execution's stream.

These are plain *async* Django views (DRF has no async views): under daphne a
``StreamingHttpResponse`` over an async generator is sent event by event, and a client that goes
away raises ``CancelledError`` in the generator. They repeat what DRF does for the sync views:
the principal fixed by the tenant middleware, one declared permission, the one error shape.

What a client reads is exactly the stored event log (``follow_events``): ``id:`` is the stored
sequence number, so ``Last-Event-ID`` / ``?after=N`` resume with no loss and no duplicates.
Wire format (the original's names): ``chunk`` and ``thinking`` carry their text as the data
(multi-line text as several ``data:`` lines, per the SSE spec); ``tool_call``, ``tool_result``,
``complete`` (the blocking response JSON), ``error`` and our ``execution.started``, ``usage``
and ``cancelled`` carry JSON; the stream ends with ``data: [DONE]``. ``: keep-alive`` comments
are sent after ``SSE_HEARTBEAT_SECONDS`` (default 15) of silence.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from agents.api.idempotency import claim_for_stream, complete_for_stream
from agents.api.serializers import check_input_schema, execution_response, parse_execute
from agents.models import TERMINAL_STATUSES, Execution, ExecutionEvent, ExecutionStatus
from agents.selectors import execution_get
from agents.services.agents import agent_get
from agents.services.executions import ExecutionRequest, execution_create, execution_run_stored
from agents.streaming.follow import StoredEvent, follow_events, read_events
from config.errors import ValidationFailed, api_exception_handler, error_response
from tenants.audit.models import AuditOutcome
from tenants.audit.services import audit_record
from tenants.context import in_schema
from tenants.principals import Principal
from tenants.roles import Permission

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_SECONDS = 15.0
DONE = b"data: [DONE]\n\n"
TEXT_EVENTS = frozenset({"chunk", "thinking"})
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

# Runs started by a stream. The event loop keeps only weak references to tasks: without this
# set, a run whose client went away (on_disconnect=continue) could be garbage collected.
_RUNS: set[asyncio.Task[Any]] = set()


def heartbeat_seconds() -> float:
    return float(getattr(settings, "SSE_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS))


# ---- request handling shared by both views ----


class Refused(Exception):
    def __init__(self, response: HttpResponse) -> None:
        self.response = response


async def _authorize(request: HttpRequest, permission: Permission) -> Principal:
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
    if not principal.can(permission):
        await sync_to_async(audit_record)(
            schema_name=principal.schema_name,
            actor=principal.audit_actor,
            action="permission.denied",
            outcome=AuditOutcome.DENIED,
            request=request,
            details={
                "permission": str(permission),
                "role": principal.role,
                "method": request.method,
                "path": request.path,
            },
        )
        raise Refused(
            error_response(
                request, 403, "permission_denied", "Your role does not allow this operation."
            )
        )
    return principal


def _allow(request: HttpRequest, method: str) -> None:
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
    return JsonResponse(handled.data, status=handled.status_code)


def _cursor(request: HttpRequest) -> int:
    raw = request.headers.get("Last-Event-ID") or request.GET.get("after") or "0"
    try:
        after = int(raw)
    except ValueError:
        raise ValidationFailed("after: Last-Event-ID / after must be an integer") from None
    if after < 0:
        raise ValidationFailed("after: must not be negative")
    return after


# ---- SSE framing ----


def frame(seq: int | None, event: str, data: str) -> bytes:
    lines = [f"id: {seq}"] if seq is not None else []
    lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    return ("\n".join(lines) + "\n\n").encode()


def _final(execution_id: str) -> Execution:
    return Execution.objects.get(pk=execution_id)


async def _terminal_execution(schema: str, execution_id: str) -> Execution:
    # The terminal event is written just before the terminal status: wait out that gap.
    execution = await in_schema(schema, _final, execution_id)
    for _ in range(40):
        if execution.status in TERMINAL_STATUSES:
            break
        await asyncio.sleep(0.05)
        execution = await in_schema(schema, _final, execution_id)
    return execution


async def event_frame(schema: str, execution_id: str, event: StoredEvent) -> bytes:
    if event.type in TEXT_EVENTS:
        text = event.data.get("text") if event.type == "chunk" else event.data.get("message")
        return frame(event.seq, event.type, str(text or ""))
    payload: dict[str, Any] = dict(event.data)
    if event.type == "complete":
        payload = execution_response(await _terminal_execution(schema, execution_id))
    elif event.type == "error":
        payload = {
            "execution_id": execution_id,
            "error": event.data.get("message"),
            "code": event.data.get("code"),
        }
    elif event.type == "cancelled":
        payload = {"execution_id": execution_id, **payload}
    return frame(event.seq, event.type, json.dumps(payload, separators=(",", ":"), default=str))


def _status_and_terminal_seq(execution_id: str) -> tuple[str, int | None]:
    status = Execution.objects.values_list("status", flat=True).get(pk=execution_id)
    last = (
        ExecutionEvent.objects.filter(
            execution_id=execution_id, type__in=["complete", "error", "cancelled"]
        )
        .order_by("-seq")
        .values_list("seq", flat=True)
        .first()
    )
    return status, last


async def sse_events(schema: str, execution_id: str, *, after: int) -> AsyncIterator[bytes]:
    """Stored events with ``seq > after``, then live ones, then ``[DONE]``."""
    _, terminal_seq = await in_schema(schema, _status_and_terminal_seq, execution_id)
    if terminal_seq is not None and terminal_seq <= after:
        yield DONE  # the client already has the end
        return
    cursor = after
    async for event in follow_events(schema, execution_id, after=after, idle=heartbeat_seconds()):
        if event is not None:
            cursor = event.seq
            yield await event_frame(schema, execution_id, event)
            continue
        yield b": keep-alive\n\n"
        # A run ended without a terminal event (e.g. failed by a sweeper) must not be
        # followed forever: once its status is terminal, send what is left and stop.
        status, _ = await in_schema(schema, _status_and_terminal_seq, execution_id)
        if status in TERMINAL_STATUSES:
            while rest := await read_events(schema, execution_id, cursor):
                for stored in rest:
                    cursor = stored.seq
                    yield await event_frame(schema, execution_id, stored)
            break
    yield DONE


async def _run_detached(schema: str, execution_id: str) -> None:
    # Its own thread-sensitive context: the run may outlive the request (on_disconnect=continue),
    # whose database thread ends with the response.
    async with ThreadSensitiveContext():
        try:
            await execution_run_stored(schema_name=schema, execution_id=execution_id)
        finally:
            # The run's own database thread ends here: close its connection with it.
            await sync_to_async(_close_connection, thread_sensitive=True)()


def _close_connection() -> None:
    # Looked up on the thread that runs this, not bound on the event loop's thread: Django's
    # connections are per thread, and closing another thread's one raises.
    connection.close()


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("streamed run %s failed", task.get_name(), exc_info=task.exception())


def start_run(schema: str, execution_id: str) -> asyncio.Task[Any]:
    """Run a stored execution in a task of its own, detached from the request.

    The task starts from an *empty* context: a copy of the view's context would carry asgiref's
    per-request executors (the sync middleware's thread), which quit when the response starts,
    and every later database call of the run would fail ("CurrentThreadExecutor already quit").
    """
    task = asyncio.create_task(
        _run_detached(schema, execution_id),
        name=f"run-{execution_id}",
        context=contextvars.Context(),
    )
    task.add_done_callback(_log_failure)
    _RUNS.add(task)
    task.add_done_callback(_RUNS.discard)
    return task


async def run_stream(
    schema: str, execution_id: str, run: asyncio.Task[Any] | None, *, cancel_on_disconnect: bool
) -> AsyncIterator[bytes]:
    finished = False
    try:
        async for chunk in sse_events(schema, execution_id, after=0):
            yield chunk
        finished = True
    finally:
        # Reached early only when the client went away (CancelledError / aclose).
        if run is not None and not finished and cancel_on_disconnect and not run.done():
            run.cancel()


def sse_response(body: AsyncIterator[bytes], location: str, **headers: str) -> HttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not buffer the stream
    response["Location"] = location
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


# ---- views ----


def _create_for_stream(schema: str, agent_ref: str, request: ExecutionRequest) -> Execution:
    agent = agent_get(agent_ref)
    check_input_schema(agent, request, schema)
    # Stored as pending, then claimed and run live by ``execution_run_stored``: the id is known
    # before the response starts (Location), and a bad request is a JSON 4xx, not a stream.
    return execution_create(
        schema_name=schema,
        request=dataclasses.replace(request, agent_ref=agent.id),
        status=ExecutionStatus.PENDING,
    )


@csrf_exempt
async def agent_execute_stream(request: HttpRequest, agent_id: str) -> HttpResponse:
    """``POST /agents/{agent_id}/execute/stream``: run live, stream the event log.

    ``on_disconnect`` (query or ``execution_config``): ``cancel`` (default) stops the run when
    the client goes away; ``continue`` lets it finish (attach again to read the rest). An
    ``Idempotency-Key`` repeat gets the first run's stream from its start, never a second run.
    """
    try:
        _allow(request, "POST")
        principal = await _authorize(request, Permission.EXECUTIONS_RUN)
        body = _json_body(request)
        schema = principal.schema_name
        claim = await claim_for_stream(request, principal, body)
        if claim.response is not None:
            return claim.response
        if claim.execution_id is not None:
            return sse_response(
                sse_events(schema, claim.execution_id, after=0),
                claim.location,
                Idempotent_Replayed="true",
            )
        try:
            call = parse_execute(body, agent_ref=agent_id, principal=principal, request=request)
            policy = request.GET.get("on_disconnect") or call.on_disconnect or "cancel"
            if policy not in {"cancel", "continue"}:
                raise ValidationFailed("on_disconnect: must be 'cancel' or 'continue'")
            execution = await in_schema(schema, _create_for_stream, schema, agent_id, call.request)
        except Exception as exc:
            try:
                refusal = error_json(request, exc)
            except Exception:
                await complete_for_stream(schema, claim.record)  # a 500: release the key
                raise
            await complete_for_stream(schema, claim.record, response=refusal)
            return refusal
        location = f"/agents/{execution.agent_id}/executions/{execution.id}/stream"
        await complete_for_stream(schema, claim.record, execution=execution, location=location)
    except Exception as exc:
        return error_json(request, exc)
    run = start_run(schema, execution.id)
    return sse_response(
        run_stream(schema, execution.id, run, cancel_on_disconnect=policy == "cancel"), location
    )


def _attach_target(agent_ref: str, execution_id: str) -> Execution:
    return execution_get(execution_id, agent=agent_get(agent_ref))


async def execution_stream_attach(
    request: HttpRequest, agent_id: str, execution_id: str
) -> HttpResponse:
    """``GET /agents/{agent_id}/executions/{execution_id}/stream``: replay the stored events
    after the cursor (``Last-Event-ID`` or ``?after=N``), then follow until the end."""
    try:
        _allow(request, "GET")
        principal = await _authorize(request, Permission.EXECUTIONS_READ)
        after = _cursor(request)
        schema = principal.schema_name
        execution = await in_schema(schema, _attach_target, agent_id, execution_id)
    except Exception as exc:
        return error_json(request, exc)
    location = f"/agents/{execution.agent_id}/executions/{execution.id}/stream"
    return sse_response(sse_events(schema, execution.id, after=after), location)
