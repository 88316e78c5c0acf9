"""What the Chat Completions and Responses views share: the caller, the body, the start of the
run through the core, its end, and the SSE response around a stream.

These are plain async Django views (like ``agents.api.sse``): under daphne a
``StreamingHttpResponse`` over an async generator is sent event by event, and a client that goes
away raises ``CancelledError`` in the generator, which cancels the run (as OpenAI does when a
client drops a stream). Refusals come before anything streams, as JSON errors in OpenAI's shape.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from agents.core import (
    REPLAYED_HEADER,
    Conversation,
    RunHandle,
    read_events,
    start_conversation,
)
from agents.core.idempotency import HEADER as IDEMPOTENCY_HEADER
from agents.core.streams import StreamLease, leased, open_stream
from agents.models import Execution, ExecutionStatus
from agents.openai_compat.errors import (
    EXECUTION_HEADER,
    OpenAIError,
    domain_error,
    error_json,
    invalid,
    run_failure,
)
from config.errors import DomainError
from config.middleware import request_id_for
from tenants.access import authorize_async
from tenants.principals import Principal
from tenants.roles import Permission

T = TypeVar("T")

DONE = b"data: [DONE]\n\n"
KEEP_ALIVE = b": keep-alive\n\n"
_FINISH_REASONS = {"length": "length", "max_tokens": "length", "tool_calls": "tool_calls"}


class Answered(Exception):
    """A response decided before any run started (an error)."""

    def __init__(self, response: HttpResponse) -> None:
        self.response = response


def refusal(request: HttpRequest, exc: Exception) -> HttpResponse:
    """The OpenAI-shaped answer to what a view raised; anything unexpected propagates."""
    if isinstance(exc, Answered):
        return exc.response
    if isinstance(exc, OpenAIError):
        return error_json(
            request, exc.status, exc.message, type_=exc.type, param=exc.param, code=exc.code
        )
    if isinstance(exc, DomainError):
        return domain_error(request, exc)
    if isinstance(exc, RequestDataTooBig):
        return error_json(request, 413, "The request body is too large.", code="body_too_large")
    raise exc


async def caller(request: HttpRequest, permission: Permission) -> Principal:
    """The authenticated principal (the middleware resolved it), allowed ``permission``."""
    principal = getattr(request, "principal", None)
    if not isinstance(principal, Principal):
        raise Answered(
            error_json(
                request,
                401,
                "Authentication credentials were not provided: send your API key as "
                "'Authorization: Bearer <key>'.",
                code="not_authenticated",
                headers={"WWW-Authenticate": 'Bearer realm="api"'},
            )
        )
    await authorize_async(
        principal, permission, request=request, method=request.method, path=request.path
    )
    return principal


def require_method(request: HttpRequest, method: str) -> None:
    if request.method != method:
        response = error_json(request, 405, f"Use {method}.", code="method_not_allowed")
        response["Allow"] = method
        raise Answered(response)


def json_body(request: HttpRequest) -> Any:
    raw = request.body  # RequestDataTooBig (413) when over DATA_UPLOAD_MAX_MEMORY_SIZE
    if request.content_type != "application/json":
        raise OpenAIError(
            "Send a JSON body (Content-Type: application/json).",
            status=415,
            code="unsupported_media_type",
        )
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid("body", "malformed JSON") from None


@dataclass
class Started:
    """A run the view started (or found, for an ``Idempotency-Key`` repeat)."""

    handle: RunHandle
    conversation: Conversation
    lease: StreamLease | None

    @property
    def execution_id(self) -> str:
        return self.handle.execution_id

    @property
    def created(self) -> int:
        return int(self.handle.execution.created_at.timestamp())

    def headers(self) -> dict[str, str]:
        headers = {EXECUTION_HEADER: self.execution_id}
        if self.handle.replayed:
            headers[REPLAYED_HEADER] = "true"
        return headers


async def start(
    request: HttpRequest,
    parse: Callable[[Any], T],
    conversation_of: Callable[[T], Conversation],
    *,
    stream: Callable[[T], bool],
) -> tuple[T, Started]:
    """Authenticate, parse, take a stream's place (the plan's open-stream caps), start."""
    require_method(request, "POST")
    principal = await caller(request, Permission.EXECUTIONS_RUN)
    body = json_body(request)
    call = parse(body)
    conversation = conversation_of(call)
    streamed = stream(call)
    # The stream's place first: a refused stream must not have started a run.
    lease = await open_stream(principal) if streamed else None
    try:
        handle = await start_conversation(
            principal=principal,
            conversation=conversation,
            mode="streamed" if streamed else "blocking",
            request_id=request_id_for(request),
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
            fingerprint={"path": request.path, "body": body},
        )
    except BaseException:
        if lease is not None:
            await lease.close()
        raise
    return call, Started(handle, conversation, lease)


@dataclass(frozen=True)
class Ended:
    """A blocking run's end, as both APIs frame it."""

    execution: Execution
    text: str
    tool_calls: list[dict[str, Any]]
    finish_reason: str


def finish_reason(raw: Any) -> str:
    return _FINISH_REASONS.get(str(raw or "stop"), "stop")


def answer_of(output: Any) -> tuple[str, list[dict[str, Any]]]:
    """(text, tool calls) of a run's output: the reply, or the calls of the caller's tools."""
    if isinstance(output, dict) and isinstance(output.get("tool_calls"), list):
        return str(output.get("content") or ""), list(output["tool_calls"])
    if isinstance(output, str):
        return output, []
    return json.dumps(output, ensure_ascii=False, default=str), []


async def ended(started: Started) -> Ended | HttpResponse:
    """Wait for a blocking run; its answer, or the error response for how it failed."""
    wait = settings.IDEMPOTENCY_WAIT_SECONDS if started.handle.replayed else None
    execution = await started.handle.result(wait=wait)
    if execution.status != ExecutionStatus.COMPLETED:
        status, body, headers = run_failure(
            execution.error_code, execution.error_message, execution.id
        )
        response = JsonResponse(body, status=status)
        for name, value in {**headers, **started.headers()}.items():
            response[name] = value
        return response
    text, calls = answer_of(execution.output)
    reason = "tool_calls" if calls else "stop"
    if not calls:
        # The provider's own reason ("length") is in the stored terminal event.
        for event in await read_events(started.handle.schema_name, execution.id):
            if event.type == "complete":
                reason = finish_reason(event.data.get("finish_reason"))
    return Ended(execution, text, calls, reason)


def usage_of(data: dict[str, Any]) -> tuple[int, int]:
    nested = data.get("usage")
    usage = nested if isinstance(nested, dict) else data
    return int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)


def sse(
    started: Started, body: AsyncIterator[bytes], *, cancel_on_disconnect: bool = True
) -> StreamingHttpResponse:
    async def guarded() -> AsyncIterator[bytes]:
        finished = False
        try:
            async for chunk in body:
                yield chunk
            finished = True
        finally:
            # Reached early only when the client went away (CancelledError / aclose).
            if not finished and cancel_on_disconnect:
                started.handle.cancel()

    stream: AsyncIterator[bytes] = guarded()
    if started.lease is not None:
        stream = leased(stream, started.lease)
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not buffer the stream
    for name, value in started.headers().items():
        response[name] = value
    return response


def json_response(payload: dict[str, Any], started: Started) -> JsonResponse:
    response = JsonResponse(payload)
    for name, value in started.headers().items():
        response[name] = value
    return response


def data_line(payload: dict[str, Any], event: str | None = None) -> bytes:
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {text}\n\n".encode()
