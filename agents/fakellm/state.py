"""Scripted behaviours, probabilistic faults and the request log of the fake LLM server.

Tests isolate themselves by API key: scripts are queued per key and consumed one per request
carrying that key, and the request log is kept per key. A request with no script left gets a
fault drawn from the key's :class:`Chaos` settings (or the global ones), else the default reply.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter, OrderedDict, deque
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
    vendor error event of that type after the first chunk). ``fault_after_chunks`` moves the
    point of those stream faults: after that many text chunks (0: before any text).
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
    fault_after_chunks: int | None = None

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
    "fault_after_chunks": int,
}
assert set(_TYPES) == {f.name for f in fields(Step)}
DEFAULT_STEP = Step()

STATUS_FAULTS = ("429", "500", "503")
STREAM_FAULTS = ("disconnect", "truncate", "malformed")
# A stream fault lands before any text, or after the first, second or third chunk.
MAX_FAULT_AFTER_CHUNKS = 3


@dataclass(frozen=True, slots=True)
class Chaos:
    """Fault rates for requests without a script.

    ``rates`` maps fault names to probabilities: ``"429"``, ``"500"``, ``"503"`` (the share of
    requests answered with that status; at most 1 together) and ``"disconnect"``,
    ``"truncate"``, ``"malformed"`` (the share of the remaining, streamed responses that break
    that way, before or after some text; at most 1 together). ``retry_after`` goes with 429s.

    Draws are reproducible: each one is seeded from ``seed``, the request body and how often
    that key sent that same body, so a retried request gets a fresh draw while the overall
    outcome depends neither on how concurrent requests interleave nor on the key's name.
    """

    rates: dict[str, float]
    seed: int | str = 0
    retry_after: float | None = None

    @classmethod
    def parse(cls, raw: Any) -> Chaos:
        if not isinstance(raw, dict):
            raise ValueError("chaos settings must be a JSON object")
        unknown = set(raw) - {"key", "rates", "seed", "retry_after"}
        if unknown:
            raise ValueError(f"unknown chaos keys: {sorted(unknown)}")
        rates = raw.get("rates") or {}
        if not isinstance(rates, dict):
            raise ValueError("rates must be an object")
        bad = set(rates) - set(STATUS_FAULTS) - set(STREAM_FAULTS)
        if bad:
            raise ValueError(f"unknown faults: {sorted(bad)}")
        for name, rate in rates.items():
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise ValueError(f"rate of {name!r} must be a number between 0 and 1")
        for group in (STATUS_FAULTS, STREAM_FAULTS):
            if sum(rates.get(name, 0) for name in group) > 1:
                raise ValueError(f"the rates of {', '.join(group)} add up to more than 1")
        seed = raw.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int | str):
            raise ValueError("seed must be an integer or a string")
        retry_after = raw.get("retry_after")
        if retry_after is not None and (
            isinstance(retry_after, bool) or not isinstance(retry_after, int | float)
        ):
            raise ValueError("retry_after must be a number")
        return cls({k: float(v) for k, v in rates.items()}, seed, retry_after)

    def as_json(self) -> dict[str, Any]:
        return {"rates": dict(self.rates), "seed": self.seed, "retry_after": self.retry_after}

    def draw(self, rng: random.Random) -> tuple[str, Step]:
        """The fault for one request (``"ok"`` and the default step when none)."""
        roll = rng.random()
        for name in STATUS_FAULTS:
            roll -= self.rates.get(name, 0.0)
            if roll < 0:
                retry_after = self.retry_after if name == "429" else None
                return name, Step(status=int(name), retry_after=retry_after)
        roll = rng.random()
        after = rng.randint(0, MAX_FAULT_AFTER_CHUNKS)
        for name in STREAM_FAULTS:
            roll -= self.rates.get(name, 0.0)
            if roll < 0:
                fault = {
                    "disconnect": Step(reset_mid_stream=True, fault_after_chunks=after),
                    "truncate": Step(truncate=True, fault_after_chunks=after),
                    "malformed": Step(malformed=True, fault_after_chunks=after),
                }[name]
                return name, fault
        return "ok", DEFAULT_STEP


class FakeState:
    """Thread-safe: the control API and tests may run on other threads than the server loop."""

    def __init__(self, *, first_token_delay: float = 0.0, chunk_delay: float = 0.0) -> None:
        self.first_token_delay = first_token_delay
        self.chunk_delay = chunk_delay
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Step]] = {}
        self._requests: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        # None holds the global chaos settings, used for keys without their own.
        self._chaos: dict[str | None, Chaos] = {}
        self._injected: dict[str, Counter[str]] = {}
        # How often each (key, body digest) was seen: the draw counter of Chaos.
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()

    def queue(self, key: str, steps: list[Step]) -> int:
        with self._lock:
            queue = self._scripts.setdefault(key, deque())
            queue.extend(steps)
            return len(queue)

    def clear(self, key: str | None = None) -> None:
        """Forget the scripts, request log and chaos settings of ``key`` (None: of everyone)."""
        with self._lock:
            if key is None:
                self._scripts.clear()
                self._requests.clear()
                self._chaos.clear()
            else:
                self._scripts.pop(key, None)
                self._requests.pop(key, None)
                self._chaos.pop(key, None)
            self._forget_draws_locked(key)

    def set_chaos(self, key: str | None, chaos: Chaos | None) -> None:
        """Set (or with None remove) the fault rates of ``key``, or the global ones. Draws start
        afresh, so the same settings replay the same faults for the same requests."""
        with self._lock:
            if chaos is None:
                self._chaos.pop(key, None)
            else:
                self._chaos[key] = chaos
            self._forget_draws_locked(key)

    def _forget_draws_locked(self, key: str | None) -> None:
        if key is None:
            self._injected.clear()
            self._seen.clear()
            return
        self._injected.pop(key, None)
        for seen in [k for k in self._seen if k[0] == key]:
            del self._seen[seen]

    def chaos(self, key: str | None) -> dict[str, Any]:
        """The chaos settings in force for ``key`` and the faults injected so far."""
        with self._lock:
            chaos = self._chaos.get(key) or self._chaos.get(None)
            if key is None:
                injected: Counter[str] = sum(self._injected.values(), Counter())
            else:
                injected = self._injected.get(key, Counter())
            return {"chaos": chaos.as_json() if chaos else None, "injected": dict(injected)}

    def next_step(self, key: str, body: bytes = b"") -> Step:
        """The scripted step for ``key``, else a chaos draw, else the default reply."""
        with self._lock:
            queue = self._scripts.get(key)
            if queue:
                step = queue.popleft()
                if not queue:
                    del self._scripts[key]
                return step
            chaos = self._chaos.get(key) or self._chaos.get(None)
            if chaos is None:
                return DEFAULT_STEP
            # The key is left out of the seed: tests use a fresh key per run, and the same
            # settings must replay the same faults for the same requests.
            digest = hashlib.sha256(body).hexdigest()
            seen = self._seen.pop((key, digest), 0)
            self._seen[(key, digest)] = seen + 1
            if len(self._seen) > MAX_KEYS * 10:
                self._seen.popitem(last=False)
            name, step = chaos.draw(random.Random(f"{chaos.seed}:{digest}:{seen}"))
            self._injected.setdefault(key, Counter())[name] += 1
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
