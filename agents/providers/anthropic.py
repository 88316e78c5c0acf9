"""Anthropic Messages API: ``POST {base_url}/v1/messages`` streaming server-sent events.

``base_url`` has no version prefix, e.g. ``https://api.anthropic.com``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

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
    open_stream,
    parse_arguments,
    parse_object,
    stream_error,
)

VENDOR = "anthropic"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
# Anthropic has no JSON mode; the instruction goes into the system prompt.
JSON_INSTRUCTION = "Respond with a single JSON object and nothing else."
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}
        ]
    # The API rejects empty text blocks, so an assistant turn of pure tool calls has none.
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        )
    return blocks


def build_body(request: ChatRequest) -> dict[str, Any]:
    system = [m.content for m in request.messages if m.role == "system" and m.content]
    if request.json_mode or request.json_schema is not None:
        system.append(JSON_INSTRUCTION)
        if request.json_schema is not None:
            system.append(
                "The object must match this JSON Schema: " + json.dumps(request.json_schema)
            )
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        # Roles must alternate: consecutive tool results (and a following user turn) merge.
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": messages,
        "stream": True,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
    return body


class AnthropicProvider:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    def _headers(self) -> dict[str, str]:
        return {
            "x-api-key": self.config.api_key,
            "anthropic-version": API_VERSION,
            "accept": "text/event-stream",
        }

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        url = self.config.base_url.rstrip("/") + "/v1/messages"
        text: list[str] = []
        tool_blocks: dict[int, tuple[str, str, list[str]]] = {}
        input_tokens: int | None = None
        output_tokens = 0
        stop_reason: str | None = None
        model = ""
        finished = False
        async with open_stream(
            VENDOR, self.config, url, build_body(request), self._headers()
        ) as resp:
            async for event in iter_sse(VENDOR, resp):
                # After message_stop, read on to EOF so the connection returns to the pool.
                if finished:
                    continue
                data = parse_object(VENDOR, event.data)
                kind = data.get("type")
                if kind == "message_start":
                    message = data.get("message") or {}
                    model = message.get("model") or model
                    usage = message.get("usage") or {}
                    if "input_tokens" in usage:
                        # Cached prompt tokens are still prompt tokens the model read.
                        input_tokens = sum(
                            int(usage.get(k) or 0)
                            for k in (
                                "input_tokens",
                                "cache_creation_input_tokens",
                                "cache_read_input_tokens",
                            )
                        )
                    output_tokens = int(usage.get("output_tokens") or 0)
                elif kind == "content_block_start":
                    block = data.get("content_block") or {}
                    if block.get("type") == "tool_use":
                        tool_blocks[int(data["index"])] = (block["id"], block["name"], [])
                    elif block.get("type") == "text" and block.get("text"):
                        text.append(block["text"])
                        yield TextDelta(block["text"])
                elif kind == "content_block_delta":
                    delta = data.get("delta") or {}
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        text.append(delta["text"])
                        yield TextDelta(delta["text"])
                    elif delta.get("type") == "input_json_delta":
                        tool_blocks[int(data["index"])][2].append(delta.get("partial_json") or "")
                elif kind == "message_delta":
                    stop_reason = (data.get("delta") or {}).get("stop_reason") or stop_reason
                    output_tokens = int(
                        (data.get("usage") or {}).get("output_tokens") or output_tokens
                    )
                elif kind == "message_stop":
                    finished = True
                    continue
                elif kind == "error":
                    err = data.get("error") or {}
                    raise stream_error(
                        VENDOR, self.config, str(err.get("type")), str(err.get("message"))
                    )
        if not finished:
            raise malformed(VENDOR, "stream ended before message_stop")
        calls = [
            ToolCall(call_id, name, parse_arguments(VENDOR, name, "".join(parts)))
            for _, (call_id, name, parts) in sorted(tool_blocks.items())
        ]
        usage_out = None if input_tokens is None else Usage(input_tokens, output_tokens)
        reason = _STOP_REASONS.get(stop_reason or "end_turn", stop_reason)
        for closing in closing_events(
            request,
            text="".join(text),
            calls=calls,
            usage=usage_out,
            finish_reason=reason,
            model=model,
        ):
            yield closing
