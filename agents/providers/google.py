"""Google Gemini API: ``POST {base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse``.

``base_url`` is e.g. ``https://generativelanguage.googleapis.com``. The key travels in the
``x-goog-api-key`` header, never in the query string, because URLs end up in logs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from agents.providers.base import (
    ChatRequest,
    Message,
    ProviderConfig,
    ProviderEvent,
    TextDelta,
    ToolCall,
    Usage,
)
from agents.providers.http import (
    closing_events,
    iter_sse,
    malformed,
    new_call_id,
    open_stream,
    parse_object,
    stream_error,
)

VENDOR = "google"
_FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}
_FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"})
# Schema keywords the function-declaration schema dialect (an OpenAPI subset) rejects.
_UNSUPPORTED_SCHEMA_KEYS = frozenset({"$schema", "$id", "additionalProperties"})


def _schema(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _schema(v) for k, v in value.items() if k not in _UNSUPPORTED_SCHEMA_KEYS}
    if isinstance(value, list):
        return [_schema(v) for v in value]
    return value


def _tool_response(content: str) -> dict[str, Any]:
    """functionResponse.response must be an object: keep JSON objects, wrap anything else."""
    try:
        value = json.loads(content)
    except ValueError:
        return {"result": content}
    return value if isinstance(value, dict) else {"result": value}


def _parts(message: Message, call_names: dict[str, str]) -> list[dict[str, Any]]:
    if message.role == "tool":
        name = message.name or call_names.get(message.tool_call_id or "", "tool")
        return [{"functionResponse": {"name": name, "response": _tool_response(message.content)}}]
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"text": message.content})
    for call in message.tool_calls:
        parts.append({"functionCall": {"name": call.name, "args": call.arguments}})
    return parts


def build_body(request: ChatRequest) -> dict[str, Any]:
    call_names = {c.id: c.name for m in request.messages for c in m.tool_calls}
    contents: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "system":
            continue
        role = "model" if message.role == "assistant" else "user"
        parts = _parts(message, call_names)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    body: dict[str, Any] = {"contents": contents}
    system = [m.content for m in request.messages if m.role == "system" and m.content]
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config = {
        "temperature": request.temperature,
        "maxOutputTokens": request.max_tokens,
        "topP": request.top_p,
        "frequencyPenalty": request.frequency_penalty,
        "presencePenalty": request.presence_penalty,
        "stopSequences": list(request.stop) or None,
        "responseMimeType": (
            "application/json" if request.json_mode or request.json_schema is not None else None
        ),
    }
    generation = {k: v for k, v in config.items() if v is not None}
    if generation:
        body["generationConfig"] = generation
    if request.tools:
        body["tools"] = [
            {
                "functionDeclarations": [
                    {
                        "name": t.name,
                        "description": t.description,
                        "parameters": _schema(t.parameters),
                    }
                    for t in request.tools
                ]
            }
        ]
    return body


class GoogleProvider:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    def _url(self, model: str) -> str:
        name = quote(model.removeprefix("models/"), safe="-._")
        return (
            f"{self.config.base_url.rstrip('/')}/v1beta/models/{name}:streamGenerateContent?alt=sse"
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        text: list[str] = []
        calls: list[ToolCall] = []
        usage: Usage | None = None
        finish_reason: str | None = None
        model = ""
        headers = {"x-goog-api-key": self.config.api_key, "accept": "text/event-stream"}
        body = build_body(request)
        async with open_stream(
            VENDOR, self.config, self._url(request.model), body, headers
        ) as resp:
            async for event in iter_sse(VENDOR, resp):
                chunk = parse_object(VENDOR, event.data)
                if isinstance(chunk.get("error"), dict):
                    err = chunk["error"]
                    raise stream_error(
                        VENDOR, self.config, str(err.get("status")), str(err.get("message"))
                    )
                model = chunk.get("modelVersion") or model
                meta = chunk.get("usageMetadata")
                if isinstance(meta, dict) and "promptTokenCount" in meta:
                    # Counts are cumulative per chunk; the last one wins. Thinking tokens are
                    # billed as output.
                    output = int(meta.get("candidatesTokenCount") or 0)
                    usage = Usage(
                        int(meta["promptTokenCount"]),
                        output + int(meta.get("thoughtsTokenCount") or 0),
                    )
                if (chunk.get("promptFeedback") or {}).get("blockReason"):
                    finish_reason = "content_filter"
                for candidate in (chunk.get("candidates") or ())[:1]:
                    for part in (candidate.get("content") or {}).get("parts") or ():
                        if part.get("thought"):
                            continue  # thought summaries are not part of the answer
                        if isinstance(part.get("text"), str) and part["text"]:
                            text.append(part["text"])
                            yield TextDelta(part["text"])
                        call = part.get("functionCall")
                        if isinstance(call, dict):
                            args = call.get("args") or {}
                            if not isinstance(args, dict):
                                raise malformed(VENDOR, "functionCall args is not an object")
                            calls.append(
                                ToolCall(call.get("id") or new_call_id(), call["name"], args)
                            )
                    reason = candidate.get("finishReason")
                    if reason:
                        finish_reason = _FINISH_REASONS.get(
                            reason, "content_filter" if reason in _FILTERED else reason.lower()
                        )
        if finish_reason is None:
            raise malformed(VENDOR, "stream ended without a finishReason")
        for closing in closing_events(
            request,
            text="".join(text),
            calls=calls,
            usage=usage,
            finish_reason=finish_reason,
            model=model,
        ):
            yield closing
