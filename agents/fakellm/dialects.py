"""Wire formats of the fake LLM server: OpenAI, Anthropic, Gemini and Ollama.

Each dialect parses the few request fields the fake needs and renders a :class:`Reply` as a
whole response body or as stream frames. Frames come with a flag saying whether they carry
content, so the server applies first-token and chunk delays only where a model would.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Frame = tuple[bytes, bool]

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass(slots=True)
class Parsed:
    model: str
    stream: bool
    json_mode: bool
    last_user: str
    prompt_chars: int
    include_usage: bool = True


@dataclass(slots=True)
class Reply:
    text: str
    chunks: list[str]
    # (id, name, arguments, arguments as sent by the JSON-text dialects)
    tool_calls: list[tuple[str, str, dict[str, Any], str]]
    finish: str  # canonical: stop, length, tool_calls
    usage: tuple[int, int] | None
    model: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _sse(value: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + _dump(value) + b"\n\n"


def _text_of(content: Any) -> str:
    """Text of a message content: a string or a list of typed blocks/parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def _halves(text: str) -> list[str]:
    cut = len(text) // 2
    return [text[:cut], text[cut:]]


class OpenAI:
    media_type = "text/event-stream"
    garbage = b'data: {"choices": [{"delta": {"content": "unterminated\n\n'

    def parse(self, body: dict[str, Any], path: str, query: str) -> Parsed:
        messages = body.get("messages") or []
        users = [m for m in messages if m.get("role") == "user"]
        fmt = (body.get("response_format") or {}).get("type")
        return Parsed(
            model=body.get("model") or "fake-model",
            stream=bool(body.get("stream")),
            json_mode=fmt in ("json_object", "json_schema"),
            last_user=_text_of(users[-1].get("content")) if users else "",
            prompt_chars=sum(len(_text_of(m.get("content"))) for m in messages),
            include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        )

    def _calls(self, reply: Reply) -> list[dict[str, Any]]:
        return [
            {
                "id": cid,
                "type": "function",
                "function": {"name": name, "arguments": args},
            }
            for cid, name, _, args in reply.tool_calls
        ]

    def _usage(self, reply: Reply) -> dict[str, int] | None:
        if reply.usage is None:
            return None
        i, o = reply.usage
        return {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}

    def full(self, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = self._calls(reply)
        body: dict[str, Any] = {
            "id": f"chatcmpl-{reply.id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish}],
        }
        if reply.usage is not None:
            body["usage"] = self._usage(reply)
        return body

    def frames(self, reply: Reply, parsed: Parsed) -> Iterator[Frame]:
        base = {
            "id": f"chatcmpl-{reply.id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": reply.model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return _sse(
                {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            )

        yield chunk({"role": "assistant", "content": ""}), False
        for text in reply.chunks:
            yield chunk({"content": text}), True
        for index, call in enumerate(self._calls(reply)):
            head, tail = _halves(call["function"]["arguments"])
            first = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": head},
            }
            yield chunk({"tool_calls": [first]}), True
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": tail}}]}), False
        yield chunk({}, reply.finish), False
        if reply.usage is not None and parsed.include_usage:
            yield _sse({**base, "choices": [], "usage": self._usage(reply)}), False
        yield b"data: [DONE]\n\n", False

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = (
            "rate_limit_exceeded"
            if status == 429
            else "server_error"
            if status >= 500
            else "invalid_request_error"
        )
        return {"error": {"message": message, "type": kind, "code": status}}

    def stream_error(self, kind: str, message: str) -> bytes:
        return _sse({"error": {"type": kind, "message": message}})


class Anthropic:
    media_type = "text/event-stream"
    garbage = b"event: content_block_delta\ndata: {not json at all\n\n"
    _FINISH = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}

    def parse(self, body: dict[str, Any], path: str, query: str) -> Parsed:
        messages = body.get("messages") or []
        users = [m for m in messages if m.get("role") == "user" and _text_of(m.get("content"))]
        system = _text_of(body.get("system"))
        return Parsed(
            model=body.get("model") or "fake-claude",
            stream=bool(body.get("stream")),
            # Anthropic has no JSON mode; clients ask for a JSON object in the system prompt.
            json_mode="JSON object" in system,
            last_user=_text_of(users[-1].get("content")) if users else "",
            prompt_chars=len(system) + sum(len(_text_of(m.get("content"))) for m in messages),
        )

    def _blocks(self, reply: Reply) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        blocks += [
            {"type": "tool_use", "id": f"toolu_{cid}", "name": n, "input": a}
            for cid, n, a, _ in reply.tool_calls
        ]
        return blocks

    def full(self, reply: Reply) -> dict[str, Any]:
        i, o = reply.usage or (0, 0)
        return {
            "id": f"msg_{reply.id}",
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": self._blocks(reply),
            "stop_reason": self._FINISH[reply.finish],
            "stop_sequence": None,
            "usage": {"input_tokens": i, "output_tokens": o},
        }

    def frames(self, reply: Reply, parsed: Parsed) -> Iterator[Frame]:
        message: dict[str, Any] = {
            "id": f"msg_{reply.id}",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": reply.model,
            "stop_reason": None,
        }
        if reply.usage is not None:
            message["usage"] = {"input_tokens": reply.usage[0], "output_tokens": 1}
        yield _sse({"type": "message_start", "message": message}, "message_start"), False
        index = 0
        if reply.chunks:
            start = {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
            yield _sse(start, "content_block_start"), False
            yield _sse({"type": "ping"}, "ping"), False
            for text in reply.chunks:
                delta = {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                }
                yield _sse(delta, "content_block_delta"), True
            yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"), False
            index = 1
        for offset, (cid, name, _, args) in enumerate(reply.tool_calls):
            at = index + offset
            block = {"type": "tool_use", "id": f"toolu_{cid}", "name": name, "input": {}}
            yield (
                _sse(
                    {"type": "content_block_start", "index": at, "content_block": block},
                    "content_block_start",
                ),
                True,
            )
            for part in _halves(args):
                delta = {"type": "input_json_delta", "partial_json": part}
                yield (
                    _sse(
                        {"type": "content_block_delta", "index": at, "delta": delta},
                        "content_block_delta",
                    ),
                    False,
                )
            yield _sse({"type": "content_block_stop", "index": at}, "content_block_stop"), False
        end: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": self._FINISH[reply.finish], "stop_sequence": None},
        }
        if reply.usage is not None:
            end["usage"] = {"output_tokens": reply.usage[1]}
        yield _sse(end, "message_delta"), False
        yield _sse({"type": "message_stop"}, "message_stop"), False

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = {429: "rate_limit_error", 401: "authentication_error", 529: "overloaded_error"}.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        return {"type": "error", "error": {"type": kind, "message": message}}

    def stream_error(self, kind: str, message: str) -> bytes:
        return _sse({"type": "error", "error": {"type": kind, "message": message}}, "error")


class Gemini:
    media_type = "text/event-stream"
    garbage = b'data: {"candidates": [{"content"\n\n'
    _FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
    _path = re.compile(r"^/v1(?:beta)?/models/([^/:]+):(generateContent|streamGenerateContent)$")

    def matches(self, path: str) -> bool:
        return bool(self._path.match(path))

    def parse(self, body: dict[str, Any], path: str, query: str) -> Parsed:
        match = self._path.match(path)
        contents = body.get("contents") or []
        users = [
            c for c in contents if c.get("role", "user") == "user" and _text_of(c.get("parts"))
        ]
        system = _text_of((body.get("systemInstruction") or {}).get("parts"))
        mime = (body.get("generationConfig") or {}).get("responseMimeType")
        return Parsed(
            model=match.group(1) if match else "gemini-fake",
            stream=bool(match and match.group(2) == "streamGenerateContent"),
            json_mode=mime == "application/json",
            last_user=_text_of(users[-1].get("parts")) if users else "",
            prompt_chars=len(system) + sum(len(_text_of(c.get("parts"))) for c in contents),
            # Without alt=sse Gemini streams one JSON array; the flag reuses include_usage's slot.
            include_usage="alt=sse" in query,
        )

    def _chunk(self, reply: Reply, parts: list[dict[str, Any]], final: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if final:
            candidate["finishReason"] = self._FINISH[reply.finish]
        chunk: dict[str, Any] = {"candidates": [candidate], "modelVersion": reply.model}
        if reply.usage is not None:
            i, o = reply.usage
            chunk["usageMetadata"] = {
                "promptTokenCount": i,
                "candidatesTokenCount": o,
                "totalTokenCount": i + o,
            }
        return chunk

    def _calls(self, reply: Reply) -> list[dict[str, Any]]:
        return [{"functionCall": {"name": n, "args": a}} for _, n, a, _ in reply.tool_calls]

    def full(self, reply: Reply) -> dict[str, Any]:
        parts = ([{"text": reply.text}] if reply.text else []) + self._calls(reply)
        return self._chunk(reply, parts, True)

    def frames(self, reply: Reply, parsed: Parsed) -> Iterator[Frame]:
        for text in reply.chunks:
            yield _sse(self._chunk(reply, [{"text": text}], False)), True
        yield _sse(self._chunk(reply, self._calls(reply), True)), bool(reply.tool_calls)

    def error(self, status: int, message: str) -> dict[str, Any]:
        return {
            "error": {
                "code": status,
                "message": message,
                "status": _STATUS_NAMES.get(status, "UNKNOWN"),
            }
        }

    def stream_error(self, kind: str, message: str) -> bytes:
        return _sse({"error": {"code": 500, "message": message, "status": kind}})


class Ollama:
    media_type = "application/x-ndjson"
    garbage = b'{"message": {"content": "unterminated\n'

    def parse(self, body: dict[str, Any], path: str, query: str) -> Parsed:
        messages = body.get("messages") or []
        users = [m for m in messages if m.get("role") == "user"]
        fmt = body.get("format")
        return Parsed(
            model=body.get("model") or "llama-fake",
            stream=body.get("stream", True) is not False,
            json_mode=fmt == "json" or isinstance(fmt, dict),
            last_user=str(users[-1].get("content") or "") if users else "",
            prompt_chars=sum(len(str(m.get("content") or "")) for m in messages),
        )

    def _line(self, reply: Reply, message: dict[str, Any], done: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": reply.model,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "message": {"role": "assistant", **message},
            "done": done,
        }
        if done:
            body["done_reason"] = "length" if reply.finish == "length" else "stop"
            if reply.usage is not None:
                body["prompt_eval_count"], body["eval_count"] = reply.usage
        return body

    def _calls(self, reply: Reply) -> list[dict[str, Any]]:
        return [{"function": {"name": n, "arguments": a}} for _, n, a, _ in reply.tool_calls]

    def full(self, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = self._calls(reply)
        return self._line(reply, message, True)

    def frames(self, reply: Reply, parsed: Parsed) -> Iterator[Frame]:
        for text in reply.chunks:
            yield _dump(self._line(reply, {"content": text}, False)) + b"\n", True
        if reply.tool_calls:
            line = self._line(reply, {"content": "", "tool_calls": self._calls(reply)}, False)
            yield _dump(line) + b"\n", True
        yield _dump(self._line(reply, {"content": ""}, True)) + b"\n", False

    def error(self, status: int, message: str) -> dict[str, Any]:
        return {"error": message}

    def stream_error(self, kind: str, message: str) -> bytes:
        return _dump({"error": message}) + b"\n"


Dialect = OpenAI | Anthropic | Gemini | Ollama
OPENAI, ANTHROPIC, GEMINI, OLLAMA = OpenAI(), Anthropic(), Gemini(), Ollama()


def dialect_for(path: str) -> Dialect | None:
    if path.endswith("/chat/completions"):
        return OPENAI
    if path == "/v1/messages":
        return ANTHROPIC
    if path == "/api/chat":
        return OLLAMA
    if GEMINI.matches(path):
        return GEMINI
    return None
