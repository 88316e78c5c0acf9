"""Scripted behaviours and the request log of the fake LLM server.

Tests isolate themselves by API key: scripts are queued per key and consumed one per request
carrying that key, and the request log is kept per key.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, fields
from typing import Any

MAX_KEYS = 10_000
MAX_REQUESTS_PER_KEY = 200
# Never recorded: they carry the API key.
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "api-key"})


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted behaviour; keys combine, e.g. ``{"reply": "hi", "latency": 0.2}``.

    Reply: ``reply`` (text), ``json`` (any JSON value, sent as the text), ``tool_calls``
    (``[{"name": ..., "arguments": {...}}]``, or ``"raw_arguments": "<text>"`` to send broken
    JSON), ``chunks`` (how many text chunks), ``usage`` (false omits usage), ``finish``
    (``"length"``), ``model``. Timing: ``latency`` (before headers), ``first_token_delay``,
    ``chunk_delay``. Faults: ``status`` (+ ``retry_after``, ``message``), ``hang_after_headers``,
    ``malformed`` (garbage after the first chunk), ``truncate`` (clean EOF after the first chunk,
    no terminator), ``reset_mid_stream`` (connection dropped half-way), ``stream_error`` (a
    vendor error event of that type after the first chunk).
    """

    reply: str | None = None
    chunks: int | None = None
    chunk_delay: float | None = None
    first_token_delay: float | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    json: Any = None
    latency: float = 0.0
    status: int | None = None
    retry_after: float | str | None = None
    message: str | None = None
    hang_after_headers: bool = False
    malformed: bool = False
    truncate: bool = False
    reset_mid_stream: bool = False
    usage: bool = True
    stream_error: str | None = None
    finish: str | None = None
    model: str | None = None

    @classmethod
    def parse(cls, raw: Any) -> Step:
        if not isinstance(raw, dict):
            raise ValueError("a step must be a JSON object")
        unknown = set(raw) - set(_TYPES)
        if unknown:
            raise ValueError(f"unknown step keys: {sorted(unknown)}")
        nullable = {f.name for f in fields(cls) if f.default is None}
        for name, value in raw.items():
            if not isinstance(value, _TYPES[name]) and not (value is None and name in nullable):
                raise ValueError(f"step key {name!r} has the wrong type")
        values = dict(raw)
        calls = values.get("tool_calls") or ()
        for call in calls:
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise ValueError("each tool call needs a name")
            if not isinstance(call.get("arguments", {}), dict):
                raise ValueError("tool call arguments must be an object (or use raw_arguments)")
        values["tool_calls"] = tuple(calls)
        return cls(**values)


_NUMBER = (int, float)
_TYPES: dict[str, type | tuple[type, ...]] = {
    "reply": str,
    "chunks": int,
    "chunk_delay": _NUMBER,
    "first_token_delay": _NUMBER,
    "tool_calls": list,
    "json": object,
    "latency": _NUMBER,
    "status": int,
    "retry_after": (int, float, str),
    "message": str,
    "hang_after_headers": bool,
    "malformed": bool,
    "truncate": bool,
    "reset_mid_stream": bool,
    "usage": bool,
    "stream_error": str,
    "finish": str,
    "model": str,
}
assert set(_TYPES) == {f.name for f in fields(Step)}
DEFAULT_STEP = Step()


class FakeState:
    """Thread-safe: the control API and tests may run on other threads than the server loop."""

    def __init__(self, *, first_token_delay: float = 0.0, chunk_delay: float = 0.0) -> None:
        self.first_token_delay = first_token_delay
        self.chunk_delay = chunk_delay
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Step]] = {}
        self._requests: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()

    def queue(self, key: str, steps: list[Step]) -> int:
        with self._lock:
            queue = self._scripts.setdefault(key, deque())
            queue.extend(steps)
            return len(queue)

    def clear(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._scripts.clear()
                self._requests.clear()
            else:
                self._scripts.pop(key, None)
                self._requests.pop(key, None)

    def next_step(self, key: str) -> Step:
        with self._lock:
            queue = self._scripts.get(key)
            if not queue:
                return DEFAULT_STEP
            step = queue.popleft()
            if not queue:
                del self._scripts[key]
            return step

    def record(
        self, key: str, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> dict[str, Any]:
        """Log a request; the returned dict is updated in place as the response progresses."""
        entry: dict[str, Any] = {
            "method": method,
            "path": path,
            "json": body,
            "headers": {k: v for k, v in headers.items() if k not in SECRET_HEADERS},
            "received_at": time.time(),
            "completed": False,
            "client_closed": False,
            "closed_at": None,
        }
        with self._lock:
            log = self._requests.get(key)
            if log is None:
                log = self._requests[key] = deque(maxlen=MAX_REQUESTS_PER_KEY)
                if len(self._requests) > MAX_KEYS:
                    self._requests.popitem(last=False)
            log.append(entry)
        return entry

    def requests(self, key: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._requests.get(key, ())]
