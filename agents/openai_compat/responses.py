"""``POST /v1/responses``: OpenAI's Responses API over the execution core.

Stateless: every request carries its whole input (``previous_response_id`` and stored
conversations are refused with a 400). Plain: a ``response`` object whose ``output`` holds a
``message`` item (``output_text``) or the ``function_call`` items of the caller's tools.
Streamed: ``response.created``, ``response.in_progress``, ``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta``..., the matching ``.done``
events, ``response.function_call_arguments.delta``/``.done`` for tool calls, then
``response.completed`` (or ``response.failed``), each with its ``sequence_number``. A reply
withdrawn part-way (the core retrying) ends the stream with ``response.failed``
(``stream_reset``), as for Chat Completions.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from agents.core import DatabaseUnavailable
from agents.openai_compat.transport import (
    KEEP_ALIVE,
    Ended,
    Started,
    answer_of,
    data_line,
    ended,
    json_response,
    refusal,
    sse,
    start,
    usage_of,
)
from agents.openai_compat.wire import ResponsesCall, parse_responses


def response_id(execution_id: str) -> str:
    return f"resp_{execution_id}"


def usage_json(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def message_item(execution_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status else []
    return {
        "id": f"msg_{execution_id}",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def call_item(call: dict[str, Any], arguments: str | None = None) -> dict[str, Any]:
    return {
        "id": f"fc_{call.get('id')}",
        "type": "function_call",
        "status": "completed",
        "call_id": call.get("id"),
        "name": call.get("name"),
        "arguments": arguments
        if arguments is not None
        else json.dumps(call.get("arguments") or {}, ensure_ascii=False),
    }


def output_of(execution_id: str, text: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    items = [message_item(execution_id, text)] if text or not calls else []
    return items + [call_item(call) for call in calls]


def response_json(
    started: Started,
    call: ResponsesCall,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    model: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    parameters = call.conversation.parameters
    return {
        "id": response_id(started.execution_id),
        "object": "response",
        "created_at": started.created,
        "status": status,
        "error": error,
        "incomplete_details": None,
        "instructions": call.instructions,
        "max_output_tokens": parameters.get("max_tokens"),
        "model": model or call.conversation.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "temperature": parameters.get("temperature"),
        "top_p": parameters.get("top_p"),
        "tool_choice": "auto",
        "tools": [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
                "strict": False,
            }
            for t in call.conversation.tools
        ],
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "usage": usage,
        "metadata": {},
    }


class _Events:
    """Numbers the stream's events (``sequence_number``) and frames them."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return data_line(payload, event=kind)


async def events(started: Started, call: ResponsesCall) -> AsyncIterator[bytes]:
    """The run's stored events as Responses streaming events."""
    emit = _Events()
    eid = started.execution_id
    item_id = f"msg_{eid}"
    pending = response_json(started, call, status="in_progress", output=[], usage=None)
    yield emit("response.created", response=pending)
    yield emit("response.in_progress", response=pending)
    text: list[str] = []
    opened = False
    try:
        async for event in started.handle.events(idle=settings.SSE_HEARTBEAT_SECONDS):
            if event is None:
                yield KEEP_ALIVE
            elif event.type == "chunk":
                if not opened:
                    opened = True
                    yield emit(
                        "response.output_item.added",
                        output_index=0,
                        item=message_item(eid, "", status="in_progress"),
                    )
                    yield emit(
                        "response.content_part.added",
                        item_id=item_id,
                        output_index=0,
                        content_index=0,
                        part={"type": "output_text", "text": "", "annotations": []},
                    )
                delta = str(event.data.get("text") or "")
                text.append(delta)
                yield emit(
                    "response.output_text.delta",
                    item_id=item_id,
                    output_index=0,
                    content_index=0,
                    delta=delta,
                    logprobs=[],
                )
            elif event.type == "complete":
                reply, calls = answer_of(event.data.get("output"))
                reply = reply if calls else "".join(text) or reply
                output: list[dict[str, Any]] = []
                if opened or not calls:
                    if not opened:
                        yield emit(
                            "response.output_item.added",
                            output_index=0,
                            item=message_item(eid, "", status="in_progress"),
                        )
                    part = {"type": "output_text", "text": reply, "annotations": []}
                    yield emit(
                        "response.output_text.done",
                        item_id=item_id,
                        output_index=0,
                        content_index=0,
                        text=reply,
                        logprobs=[],
                    )
                    yield emit(
                        "response.content_part.done",
                        item_id=item_id,
                        output_index=0,
                        content_index=0,
                        part=part,
                    )
                    done = message_item(eid, reply)
                    yield emit("response.output_item.done", output_index=0, item=done)
                    output.append(done)
                for tool_call in calls:
                    index = len(output)
                    arguments = json.dumps(tool_call.get("arguments") or {}, ensure_ascii=False)
                    item = call_item(tool_call, arguments)
                    yield emit(
                        "response.output_item.added",
                        output_index=index,
                        item={**item, "arguments": "", "status": "in_progress"},
                    )
                    yield emit(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=index,
                        delta=arguments,
                    )
                    yield emit(
                        "response.function_call_arguments.done",
                        item_id=item["id"],
                        output_index=index,
                        arguments=arguments,
                    )
                    yield emit("response.output_item.done", output_index=index, item=item)
                    output.append(item)
                final = response_json(
                    started,
                    call,
                    status="completed",
                    output=output,
                    usage=usage_json(*usage_of(event.data)),
                    model=str(event.data.get("model") or "") or None,
                )
                yield emit("response.completed", response=final)
                return
            elif event.type in ("error", "cancelled", "reset"):
                code = "stream_reset" if event.type == "reset" else event.data.get("code")
                message = (
                    "the model's reply failed part-way and is being retried; read the result "
                    f"at GET /executions/{eid}, or send the request again"
                    if event.type == "reset"
                    else event.data.get("message")
                )
                error = {"code": str(code or event.type), "message": str(message or event.type)}
                failed = response_json(
                    started, call, status="failed", output=[], usage=None, error=error
                )
                yield emit("response.failed", response=failed)
                return
    except DatabaseUnavailable:
        error = {"code": "stream_interrupted", "message": "the database is unavailable"}
        failed = response_json(started, call, status="failed", output=[], usage=None, error=error)
        yield emit("response.failed", response=failed)


@csrf_exempt
async def create_response(request: HttpRequest) -> HttpResponseBase:
    try:
        call, started = await start(
            request, parse_responses, lambda c: c.conversation, stream=lambda c: c.stream
        )
        if call.stream:
            return sse(started, events(started, call))
        end = await ended(started)
    except Exception as exc:
        return refusal(request, exc)
    if not isinstance(end, Ended):
        return end
    execution = end.execution
    cut = end.finish_reason == "length"
    payload = response_json(
        started,
        call,
        status="incomplete" if cut else "completed",
        output=output_of(execution.id, end.text, end.tool_calls),
        usage=usage_json(execution.input_tokens, execution.output_tokens),
        model=execution.model_used or None,
    )
    if cut:
        payload["incomplete_details"] = {"reason": "max_output_tokens"}
    return json_response(payload, started)
