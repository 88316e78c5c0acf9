"""The benchmark client: paired direct / platform calls and error tallies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from common import MESSAGE
from servers import DbGuard

# ---------------------------------------------------------------------------------------------
# calls


@dataclass
class Call:
    ok: bool
    latency_ms: float = 0.0
    error: str = ""
    overhead_header_ms: float | None = None
    ttft_ms: float | None = None
    first_event_ms: float | None = None
    stamps_ms: list[float] = field(default_factory=list)
    text: str = ""
    events: Counter[str] = field(default_factory=Counter)


def ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


# Every call has a deadline: an SSE stream whose run died without a terminal event would
# otherwise be followed for ever (heartbeats keep the read timeout from firing).
DIRECT_TIMEOUT = 10.0
PLATFORM_TIMEOUT = 30.0


async def bounded(call: Awaitable[Call], seconds: float) -> Call:
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(seconds):
            return await call
    except TimeoutError:
        return Call(False, ms_since(t0), f"no answer within {seconds:.0f}s")


class Bench:
    def __init__(self, platform_url: str, fake_url: str, setup: dict[str, Any]) -> None:
        self.platform_url = platform_url
        self.fake_url = fake_url
        self.chat_url = f"{fake_url}/v1/chat/completions"
        self.agents = setup["agents"]
        # The direct client is configured like the platform's provider client
        # (agents/providers/http.py): HTTP/1.1, keep-alive pool 200/50/30 s, no env proxies.
        self.direct = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=200, max_keepalive_connections=50, keepalive_expiry=30.0
            ),
            http1=True,
            http2=False,
            trust_env=False,
            timeout=httpx.Timeout(10.0),
            follow_redirects=False,
        )
        self.auth = f"Bearer {setup['api_key']}"
        self.platform = self._platform_client()
        self.control = httpx.AsyncClient(base_url=fake_url, trust_env=False, timeout=10.0)
        self.bodies: dict[str, dict[str, Any]] = {}
        self.execute_body = {"input": {"message": MESSAGE}}
        self.guard: DbGuard | None = None

    def halted(self) -> bool:
        """True once the PostgreSQL guard tripped in the current phase."""
        return self.guard is not None and self.guard.tripped.is_set()

    def begin(self, phase: str) -> None:
        if self.guard is not None:
            self.guard.begin(phase)

    def peak(self, phase: str) -> dict[str, int] | None:
        return self.guard.peak(phase) if self.guard is not None else None

    def _platform_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.platform_url,
            limits=httpx.Limits(
                max_connections=400, max_keepalive_connections=400, keepalive_expiry=60.0
            ),
            trust_env=False,
            timeout=httpx.Timeout(30.0),
            headers={"authorization": self.auth},
        )

    async def renew_platform(self) -> None:
        """A new client for a restarted server (no stale keep-alive connections)."""
        old = self.platform
        self.platform = self._platform_client()
        with contextlib.suppress(Exception):
            await old.aclose()

    async def aclose(self) -> None:
        for client in (self.direct, self.platform, self.control):
            with contextlib.suppress(Exception):
                await client.aclose()

    # -- the fake's control API --

    async def script(self, profile: str, step: dict[str, Any], count: int) -> None:
        key = self.agents[profile]["fake_key"]
        response = await self.control.post(
            "/_control/scripts", json={"key": key, "steps": [step] * count}
        )
        response.raise_for_status()

    async def clear(self, profile: str) -> None:
        key = self.agents[profile]["fake_key"]
        (await self.control.delete("/_control/scripts", params={"key": key})).raise_for_status()

    async def capture_body(self, profile: str) -> dict[str, Any]:
        """The exact JSON body the platform sent upstream (from the fake's request log)."""
        key = self.agents[profile]["fake_key"]
        response = await self.control.get("/_control/requests", params={"key": key})
        response.raise_for_status()
        logged = response.json()["requests"]
        if not logged:
            raise RuntimeError(f"the fake LLM saw no request for {profile}")
        body = logged[-1]["json"]
        self.bodies[profile] = body
        return body

    # -- direct: the physical limit --

    async def direct_call(self, profile: str) -> Call:
        return await bounded(self._direct_call(profile), DIRECT_TIMEOUT)

    async def execute(self, profile: str = "fast") -> Call:
        return await bounded(self._execute(profile), PLATFORM_TIMEOUT)

    async def execute_stream(self, profile: str = "stream") -> Call:
        return await bounded(self._execute_stream(profile), PLATFORM_TIMEOUT)

    async def _direct_call(self, profile: str) -> Call:
        body = self.bodies[profile]
        key = self.agents[profile]["fake_key"]
        headers = {"authorization": f"Bearer {key}", "accept": "text/event-stream"}
        t0 = time.perf_counter()
        stamps: list[float] = []
        parts: list[str] = []
        done = False
        try:
            async with self.direct.stream("POST", self.chat_url, json=body, headers=headers) as r:
                if r.status_code != 200:
                    await r.aread()
                    return Call(False, ms_since(t0), f"direct HTTP {r.status_code}")
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        continue
                    chunk = json.loads(data)
                    for choice in chunk.get("choices") or ():
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            stamps.append(ms_since(t0))
                            parts.append(content)
        except (httpx.HTTPError, ValueError) as exc:
            return Call(False, ms_since(t0), f"direct {type(exc).__name__}: {exc}")
        latency = ms_since(t0)
        if not done:
            return Call(False, latency, "direct: no [DONE]")
        return Call(
            True,
            latency,
            ttft_ms=stamps[0] if stamps else None,
            stamps_ms=stamps,
            text="".join(parts),
        )

    # -- through the platform --

    async def _execute(self, profile: str) -> Call:
        agent = self.agents[profile]["agent_id"]
        t0 = time.perf_counter()
        try:
            r = await self.platform.post(f"/agents/{agent}/execute", json=self.execute_body)
            latency = ms_since(t0)
            if r.status_code != 200:
                return Call(False, latency, f"execute HTTP {r.status_code}: {r.text[:200]}")
            status = r.json().get("status")
        except (httpx.HTTPError, ValueError) as exc:
            return Call(False, ms_since(t0), f"execute {type(exc).__name__}: {exc}")
        if status != "completed":
            return Call(False, latency, f"execution {status}: {r.text[:200]}")
        header = r.headers.get("x-platform-overhead-ms")
        return Call(True, latency, overhead_header_ms=float(header) if header else None)

    async def _execute_stream(self, profile: str) -> Call:
        agent = self.agents[profile]["agent_id"]
        t0 = time.perf_counter()
        call = Call(True)
        event: str | None = None
        data: list[str] = []
        parts: list[str] = []
        done = False
        try:
            async with self.platform.stream(
                "POST",
                f"/agents/{agent}/execute/stream",
                json=self.execute_body,
                headers={"accept": "text/event-stream"},
            ) as r:
                if r.status_code != 200:
                    await r.aread()
                    return Call(False, ms_since(t0), f"stream HTTP {r.status_code}")
                async for line in r.aiter_lines():
                    if line == "":
                        if event is not None:
                            call.events[event] += 1
                            if call.first_event_ms is None:
                                call.first_event_ms = ms_since(t0)
                            if event == "chunk":
                                call.stamps_ms.append(ms_since(t0))
                                parts.append("\n".join(data))
                            elif event == "error":
                                call.ok, call.error = False, "stream error event: " + "".join(data)
                        elif data == ["[DONE]"]:
                            done = True
                        event, data = None, []
                        continue
                    if line.startswith(":"):
                        continue
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
        except (httpx.HTTPError, ValueError) as exc:
            return Call(False, ms_since(t0), f"stream {type(exc).__name__}: {exc}")
        call.latency_ms = ms_since(t0)
        call.text = "".join(parts)
        call.ttft_ms = call.stamps_ms[0] if call.stamps_ms else None
        if not done and call.ok:
            call.ok, call.error = False, "stream: no [DONE]"
        if call.ok and call.events["complete"] != 1:
            call.ok, call.error = False, f"stream: events {dict(call.events)}"
        return call

    async def get(self, url: str, *, auth: bool = True) -> Call:
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(DIRECT_TIMEOUT):
                if auth:
                    r = await self.platform.get(url)
                else:
                    r = await self.direct.get(url)
                await r.aread()
        except (httpx.HTTPError, TimeoutError) as exc:
            return Call(False, ms_since(t0), f"GET {type(exc).__name__}")
        latency = ms_since(t0)
        if r.status_code != 200:
            return Call(False, latency, f"GET {url} HTTP {r.status_code}")
        return Call(True, latency)


_IDS = re.compile(r"[0-9a-f]{16,}|\d{6,}")
_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")


class Errors:
    def __init__(self) -> None:
        self.count = 0
        self.samples: Counter[str] = Counter()

    def add(self, call: Call) -> None:
        if not call.ok:
            self.count += 1
            message = _IDS.sub("<id>", call.error)[:160]
            if message in self.samples or len(self.samples) < 20:
                self.samples[message] += 1

    def json(self) -> dict[str, Any]:
        return {"count": self.count, "examples": dict(self.samples)}


async def paired(
    first: Callable[[], Awaitable[Call]], second: Callable[[], Awaitable[Call]]
) -> tuple[Call, Call]:
    """Run (direct, platform) one after the other in random order; returns (direct, platform)."""
    if random.random() < 0.5:
        a = await first()
        b = await second()
    else:
        b = await second()
        a = await first()
    return a, b
