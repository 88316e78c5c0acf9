"""OpenAI-compatible chat completions (OpenAI, vLLM, LiteLLM, llama.cpp server, ...).

``POST {base_url}/chat/completions`` with ``stream: true``; ``base_url`` includes the API version
prefix, e.g. ``https://api.openai.com/v1``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
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
    new_call_id,
    open_stream,
    parse_arguments,
    parse_object,
    stream_error,
)

VENDOR = "openai"


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name and message.role == "user":
        wire["name"] = message.name
    if message.tool_calls:
        # An assistant turn that only called tools has null content on the wire.
        wire["content"] = message.content or None
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    return wire


def build_body(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [_message(m) for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    optional = {
        "temperature": request.temperature,
        # max_tokens, not max_completion_tokens: the latter is unknown to most compatible servers.
        "max_tokens": request.max_tokens,
        "top_p": request.top_p,
        "frequency_penalty": request.frequency_penalty,
        "presence_penalty": request.presence_penalty,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if request.stop:
        body["stop"] = list(request.stop)
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in request.tools
        ]
    if request.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": request.json_schema},
        }
    elif request.json_mode:
        body["response_format"] = {"type": "json_object"}
    return body


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class OpenAIProvider:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    def _headers(self) -> dict[str, str]:
        headers = {"accept": "text/event-stream"}
        if self.config.api_key:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        return headers

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        text: list[str] = []
        partial: dict[int, _PartialCall] = {}
        usage: Usage | None = None
        finish_reason: str | None = None
        model = ""
        done = False
        async with open_stream(
            VENDOR, self.config, url, build_body(request), self._headers()
        ) as resp:
            async for event in iter_sse(VENDOR, resp):
                # After the terminator, read on to EOF so the connection returns to the pool.
                if done:
                    continue
                if event.data.strip() == "[DONE]":
                    done = True
                    continue
                chunk = parse_object(VENDOR, event.data)
                if isinstance(chunk.get("error"), dict):
                    err = chunk["error"]
                    raise stream_error(
                        VENDOR,
                        self.config,
                        str(err.get("type") or err.get("code")),
                        str(err.get("message")),
                    )
                model = chunk.get("model") or model
                if isinstance(chunk.get("usage"), dict):
                    u = chunk["usage"]
                    usage = Usage(
                        int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
                    )
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    content = delta.get("content")
                    if isinstance(content, str) and content:
                        text.append(content)
                        yield TextDelta(content)
                    for tc in delta.get("tool_calls") or ():
                        call = partial.setdefault(int(tc.get("index", 0)), _PartialCall())
                        call.id = tc.get("id") or call.id
                        function = tc.get("function") or {}
                        # Same accumulation as the official SDK: string fields concatenate.
                        call.name += function.get("name") or ""
                        call.arguments.append(function.get("arguments") or "")
                    finish_reason = choice.get("finish_reason") or finish_reason
        if not done and finish_reason is None:
            raise malformed(VENDOR, "stream ended before [DONE]")
        calls = [
            ToolCall(
                c.id or new_call_id(), c.name, parse_arguments(VENDOR, c.name, "".join(c.arguments))
            )
            for _, c in sorted(partial.items())
        ]
        if finish_reason == "function_call":
            finish_reason = "tool_calls"
        for closing in closing_events(
            request,
            text="".join(text),
            calls=calls,
            usage=usage,
            finish_reason=finish_reason,
            model=model,
        ):
            yield closing
