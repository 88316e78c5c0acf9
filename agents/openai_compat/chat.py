"""``POST /v1/chat/completions``: OpenAI's Chat Completions over the execution core.

Plain: ``chat.completion`` with ``choices[0].message`` (``content``, ``tool_calls``),
``finish_reason`` and ``usage``. Streamed (``stream: true``): ``chat.completion.chunk``
events from the run's stored event log (text as it is written), the finish chunk, a last chunk
with ``usage`` and no choices when ``stream_options.include_usage`` is true, then
``data: [DONE]``.

A run whose model attempt fails part-way after streaming text is retried by the core, which
*withdraws* that text (a ``reset`` event); OpenAI's stream format cannot take text back, so the
stream ends there with an error chunk naming the execution (``code: stream_reset``); the run
goes on, and its result can be read from ``GET /executions/{id}``.
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
from agents.openai_compat.errors import run_failure
from agents.openai_compat.transport import (
    DONE,
    KEEP_ALIVE,
    Ended,
    Started,
    answer_of,
    data_line,
    ended,
    finish_reason,
    json_response,
    refusal,
    sse,
    start,
    usage_of,
)
from agents.openai_compat.wire import parse_chat


def completion_id(execution_id: str) -> str:
    return f"chatcmpl-{execution_id}"


def usage_json(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def tool_calls_json(calls: list[dict[str, Any]], *, indexed: bool = False) -> list[dict[str, Any]]:
    wire = []
    for index, call in enumerate(calls):
        item: dict[str, Any] = {
            "id": call.get("id"),
            "type": "function",
            "function": {
                "name": call.get("name"),
                "arguments": json.dumps(call.get("arguments") or {}, ensure_ascii=False),
            },
        }
        if indexed:
            item = {"index": index, **item}
        wire.append(item)
    return wire


def completion_json(started: Started, end: Ended) -> dict[str, Any]:
    execution = end.execution
    message: dict[str, Any] = {
        "role": "assistant",
        "content": end.text if end.text or not end.tool_calls else None,
        "refusal": None,
    }
    if end.tool_calls:
        message["tool_calls"] = tool_calls_json(end.tool_calls)
    return {
        "id": completion_id(execution.id),
        "object": "chat.completion",
        "created": started.created,
        "model": execution.model_used or started.conversation.model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": end.finish_reason, "logprobs": None}
        ],
        "usage": usage_json(execution.input_tokens, execution.output_tokens),
        "system_fingerprint": None,
    }


async def chunks(started: Started, *, include_usage: bool) -> AsyncIterator[bytes]:
    """The run's stored events as ``chat.completion.chunk`` events, then ``[DONE]``."""
    base = {
        "id": completion_id(started.execution_id),
        "object": "chat.completion.chunk",
        "created": started.created,
        "model": started.conversation.model,
        "system_fingerprint": None,
    }
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return data_line({**base, "choices": [choice], **extra})

    yield chunk({"role": "assistant", "content": ""})
    handle = started.handle
    try:
        async for event in handle.events(idle=settings.SSE_HEARTBEAT_SECONDS):
            if event is None:
                yield KEEP_ALIVE
            elif event.type == "chunk":
                yield chunk({"content": str(event.data.get("text") or "")})
            elif event.type == "reset":
                yield data_line(
                    {
                        "error": {
                            "message": "the model's reply failed part-way and is being retried; "
                            "the text streamed so far is withdrawn. Read the result at "
                            f"GET /executions/{handle.execution_id}, or send the request again.",
                            "type": "server_error",
                            "param": None,
                            "code": "stream_reset",
                        }
                    }
                )
                return
            elif event.type == "complete":
                _, calls = answer_of(event.data.get("output"))
                if calls:
                    yield chunk({"tool_calls": tool_calls_json(calls, indexed=True)})
                reason = "tool_calls" if calls else finish_reason(event.data.get("finish_reason"))
                yield chunk({}, reason)
                if include_usage:
                    usage = usage_json(*usage_of(event.data))
                    yield data_line({**base, "choices": [], "usage": usage})
                yield DONE
                return
            elif event.type in ("error", "cancelled"):
                code = str(event.data.get("code") or event.type)
                _, body, _ = run_failure(
                    code, str(event.data.get("message") or ""), handle.execution_id
                )
                yield data_line(body)
                return
    except DatabaseUnavailable:
        _, body, _ = run_failure(
            "stream_interrupted", "the database is unavailable", handle.execution_id
        )
        yield data_line(body)


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    try:
        call, started = await start(
            request, parse_chat, lambda c: c.conversation, stream=lambda c: c.stream
        )
        if call.stream:
            return sse(started, chunks(started, include_usage=call.include_usage))
        end = await ended(started)
    except Exception as exc:
        return refusal(request, exc)
    if not isinstance(end, Ended):
        return end
    return json_response(completion_json(started, end), started)
