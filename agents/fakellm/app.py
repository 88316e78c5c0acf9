"""The fake LLM server as a raw ASGI application (no framework: it doubles as the benchmark
stub, so a request costs little more than parsing JSON and writing frames)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from agents.fakellm.dialects import GEMINI, Dialect, Parsed, Reply, dialect_for
from agents.fakellm.state import Chaos, FakeState, Step

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_CHUNKS = 8
_WORDS = re.compile(r"\S+\s*|\s+")


class ResetConnection(Exception):
    """Raised mid-response on purpose: the ASGI server then drops the connection."""


class _QuietResets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ResetConnection))


def _api_key(headers: dict[str, str], query: str) -> str:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    for name in ("x-api-key", "x-goog-api-key", "api-key"):
        if headers.get(name):
            return headers[name]
    return (parse_qs(query).get("key") or [""])[0]


def _tokens(chars: int) -> int:
    return max(1, math.ceil(chars / 4)) if chars else 0


def split_chunks(text: str, count: int | None) -> list[str]:
    """Split on word boundaries into at most ``count`` pieces that join back to ``text``."""
    words = _WORDS.findall(text)
    target = min(len(words), count or DEFAULT_MAX_CHUNKS)
    if target <= 0:
        return []
    size = math.ceil(len(words) / target)
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def build_reply(step: Step, parsed: Parsed) -> Reply:
    if step.json is not None:
        text = json.dumps(step.json)
    elif step.reply is not None:
        text = step.reply
    elif step.tool_calls:
        text = ""
    elif parsed.json_mode:
        text = json.dumps({"echo": parsed.last_user})
    else:
        text = f"Echo: {parsed.last_user}"
    calls = []
    for index, call in enumerate(step.tool_calls):
        args = dict(call.get("arguments") or {})
        raw = call.get("raw_arguments")
        calls.append(
            (f"call_{index}_{uuid.uuid4().hex[:8]}", call["name"], args, raw or json.dumps(args))
        )
    out_chars = len(text) + sum(len(raw) + len(name) for _, name, _, raw in calls)
    usage = (_tokens(parsed.prompt_chars), _tokens(out_chars)) if step.usage else None
    finish = "tool_calls" if calls else (step.finish or "stop")
    return Reply(
        text, split_chunks(text, step.chunks), calls, finish, usage, step.model or parsed.model
    )


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(parts)
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _start(
    send: Send, status: int, media_type: str, extra: dict[str, str] | None = None
) -> None:
    headers = [(b"content-type", media_type.encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _json(send: Send, status: int, body: Any, extra: dict[str, str] | None = None) -> None:
    await _start(send, status, "application/json", extra)
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def create_app(state: FakeState | None = None) -> ASGIApp:
    """The ASGI app; ``state`` holds scripts and the request log (a fresh one if omitted)."""
    state = state or FakeState()
    error_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietResets) for f in error_log.filters):
        error_log.addFilter(_QuietResets())

    async def control(scope: Scope, body: bytes, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        query = parse_qs(scope.get("query_string", b"").decode())
        key = (query.get("key") or [None])[0]
        if path == "/_control/scripts" and method == "POST":
            try:
                data = json.loads(body)
                steps = [Step.parse(s) for s in data["steps"]]
                queued = state.queue(str(data["key"]), steps)
            except (ValueError, KeyError, TypeError) as exc:
                await _json(send, 400, {"error": str(exc)})
                return
            await _json(send, 200, {"queued": queued})
        elif path == "/_control/scripts" and method == "DELETE":
            state.clear(key)
            await _json(send, 200, {"cleared": True})
        elif path == "/_control/requests" and method == "GET":
            await _json(send, 200, {"requests": state.requests(key or "")})
        elif path == "/_control/chaos" and method == "POST":
            try:
                data = json.loads(body)
                chaos = Chaos.parse(data)
                chaos_key = data.get("key")
                if chaos_key is not None and not isinstance(chaos_key, str):
                    raise ValueError("key must be a string")
            except (ValueError, TypeError, AttributeError) as exc:
                await _json(send, 400, {"error": str(exc)})
                return
            state.set_chaos(chaos_key, chaos)
            await _json(send, 200, state.chaos(chaos_key))
        elif path == "/_control/chaos" and method == "GET":
            await _json(send, 200, state.chaos(key))
        elif path == "/_control/chaos" and method == "DELETE":
            state.set_chaos(key, None)
            await _json(send, 200, {"cleared": True})
        else:
            await _json(send, 404, {"error": "unknown control endpoint"})

    async def stream(
        dialect: Dialect,
        step: Step,
        parsed: Parsed,
        reply: Reply,
        entry: dict[str, Any],
        receive: Receive,
        send: Send,
    ) -> None:
        await _start(send, 200, dialect.media_type, {"cache-control": "no-cache"})
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            if step.hang_after_headers:
                await watcher
                return
            frames = list(dialect.frames(reply, parsed))
            first_delay = (
                state.first_token_delay
                if step.first_token_delay is None
                else step.first_token_delay
            )
            delay = state.chunk_delay if step.chunk_delay is None else step.chunk_delay
            content_seen = 0
            # malformed / truncate / stream_error: by default one good content frame, then the
            # bad tail (or nothing), then EOF; a reset drops the connection half-way.
            bad = step.malformed or step.truncate or step.stream_error is not None
            content = [i for i, (_, c) in enumerate(frames) if c]
            bad_cut = (content[0] if content else 0) + 1
            reset_cut = max(1, len(frames) // 2)
            if step.fault_after_chunks is not None:
                # Before the (n+1)-th content frame; past the last one, right after it (still
                # before the frame that says the reply is finished).
                n = max(0, step.fault_after_chunks)
                bad_cut = reset_cut = (
                    content[n] if n < len(content) else (content[-1] + 1 if content else 0)
                )
            for index, (frame, is_content) in enumerate(frames):
                if is_content:
                    pause = first_delay if content_seen == 0 else delay
                    if pause > 0:
                        # Waiting on the watcher rather than sleeping notices a client that
                        # went away at once.
                        await asyncio.wait({watcher}, timeout=pause)
                    content_seen += 1
                if watcher.done():
                    return
                if step.reset_mid_stream and index >= reset_cut:
                    raise ResetConnection("scripted reset")
                if bad and index >= bad_cut:
                    break
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            if step.reset_mid_stream:
                raise ResetConnection("scripted reset")
            if step.malformed:
                await send(
                    {"type": "http.response.body", "body": dialect.garbage, "more_body": True}
                )
            elif step.stream_error is not None:
                tail = dialect.stream_error(step.stream_error, "scripted stream error")
                await send({"type": "http.response.body", "body": tail, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            entry["completed"] = True
        finally:
            if watcher.done() and not entry["completed"]:
                entry["client_closed"] = True
                entry["closed_at"] = time.time()
            watcher.cancel()

    async def llm(
        scope: Scope, body: bytes, dialect: Dialect, receive: Receive, send: Send
    ) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode()
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("body must be an object")
        except ValueError:
            await _json(send, 400, dialect.error(400, "request body is not a JSON object"))
            return
        key = _api_key(headers, query)
        entry = state.record(key, scope["method"], scope["path"], data, headers)
        # The client port shows whether requests reused a kept-alive connection.
        entry["client_port"] = (scope.get("client") or ("", 0))[1]
        entry["query"] = query
        step = state.next_step(key, body)
        if step.latency > 0:
            await asyncio.sleep(step.latency)
        if step.status is not None and step.status != 200:
            extra: dict[str, str] = {}
            if step.retry_after is not None:
                extra["retry-after"] = str(step.retry_after)
            if 300 <= step.status < 400:
                extra["location"] = "http://169.254.169.254/latest/meta-data/"
            message = step.message or f"scripted status {step.status}"
            await _json(send, step.status, dialect.error(step.status, message), extra)
            entry["completed"] = True
            return
        parsed = dialect.parse(data, scope["path"], query)
        reply = build_reply(step, parsed)
        if parsed.stream and not (dialect is GEMINI and not parsed.include_usage):
            await stream(dialect, step, parsed, reply, entry, receive, send)
            return
        if step.hang_after_headers:
            await _start(send, 200, "application/json")
            await _wait_disconnect(receive)
            entry["client_closed"] = True
            return
        if step.malformed:
            await _start(send, 200, "application/json")
            await send({"type": "http.response.body", "body": b'{"choices": [unterminated'})
            return
        full = dialect.full(reply)
        await _json(send, 200, [full] if parsed.stream else full)
        entry["completed"] = True

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan or websocket support needed
        body = await _read_body(receive)
        path = scope["path"]
        if path.startswith("/_control/"):
            await control(scope, body, send)
        elif path in ("/v1/models", "/models") and scope["method"] == "GET":
            models = [
                {"id": m, "object": "model", "created": 0, "owned_by": "fakellm"}
                for m in ("fake-model", "fake-claude", "gemini-fake", "llama-fake")
            ]
            await _json(send, 200, {"object": "list", "data": models})
        elif scope["method"] == "POST" and (dialect := dialect_for(path)) is not None:
            await llm(scope, body, dialect, receive, send)
        else:
            await _json(send, 404, {"error": {"message": f"no route for {scope['method']} {path}"}})

    return app
