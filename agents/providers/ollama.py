"""Ollama native chat API: ``POST {base_url}/api/chat`` streaming newline-delimited JSON.

``base_url`` is e.g. ``http://ollama.internal:11434``. Local addresses are refused like any
other private address until an operator allow-lists them in ``allowed_private``.
"""

from __future__ import annotations

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
    iter_lines,
    malformed,
    new_call_id,
    open_stream,
    parse_object,
    stream_error,
)

VENDOR = "ollama"


def _message(message: Message, call_names: dict[str, str]) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "tool":
        wire["tool_name"] = message.name or call_names.get(message.tool_call_id or "", "")
    if message.tool_calls:
        wire["tool_calls"] = [
            {"function": {"name": c.name, "arguments": c.arguments}} for c in message.tool_calls
        ]
    return wire


def build_body(request: ChatRequest) -> dict[str, Any]:
    call_names = {c.id: c.name for m in request.messages for c in m.tool_calls}
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [_message(m, call_names) for m in request.messages],
        "stream": True,
    }
    options = {
        "temperature": request.temperature,
        "num_predict": request.max_tokens,
        "top_p": request.top_p,
        "frequency_penalty": request.frequency_penalty,
        "presence_penalty": request.presence_penalty,
        "stop": list(request.stop) or None,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if options:
        body["options"] = options
    if request.json_schema is not None:
        body["format"] = request.json_schema
    elif request.json_mode:
        body["format"] = "json"
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
    return body


class OllamaProvider:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    def _headers(self) -> dict[str, str]:
        # Plain Ollama needs no key; one is sent for deployments behind an authenticating proxy.
        headers = {"accept": "application/x-ndjson"}
        if self.config.api_key:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        return headers

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        url = self.config.base_url.rstrip("/") + "/api/chat"
        text: list[str] = []
        calls: list[ToolCall] = []
        usage: Usage | None = None
        finish_reason: str | None = None
        model = ""
        done = False
        async with open_stream(
            VENDOR, self.config, url, build_body(request), self._headers()
        ) as resp:
            async for line in iter_lines(VENDOR, resp):
                # After done, read on to EOF so the connection returns to the pool.
                if done or not line.strip():
                    continue
                chunk = parse_object(VENDOR, line)
                if "error" in chunk:
                    raise stream_error(VENDOR, self.config, "error", str(chunk["error"]))
                model = chunk.get("model") or model
                message = chunk.get("message") or {}
                content = message.get("content")
                if isinstance(content, str) and content:
                    text.append(content)
                    yield TextDelta(content)
                for tc in message.get("tool_calls") or ():
                    function = tc.get("function") or {}
                    args = function.get("arguments") or {}
                    if not isinstance(args, dict):
                        raise malformed(VENDOR, "tool call arguments are not an object")
                    calls.append(ToolCall(tc.get("id") or new_call_id(), function["name"], args))
                if chunk.get("done"):
                    done = True
                    finish_reason = chunk.get("done_reason") or "stop"
                    if "prompt_eval_count" in chunk or "eval_count" in chunk:
                        usage = Usage(
                            int(chunk.get("prompt_eval_count") or 0),
                            int(chunk.get("eval_count") or 0),
                        )
                    continue
        if not done:
            raise malformed(VENDOR, "stream ended before done")
        for closing in closing_events(
            request,
            text="".join(text),
            calls=calls,
            usage=usage,
            finish_reason=finish_reason,
            model=model,
        ):
            yield closing
