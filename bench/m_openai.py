"""M1 and M2 through the OpenAI-compatible endpoint (``POST /v1/chat/completions``).

The same agents (``agent:bench-fast``, ``agent:bench-stream``), the same upstream body and the
same direct call to the fake LLM as M1 and M2: the added latency is what the platform costs an
OpenAI client, comparable with other OpenAI-compatible gateways measured on identical requests
(an OpenAI-format request in, the same model call upstream, an OpenAI-format answer out).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from client import PLATFORM_TIMEOUT, Bench, Call, Errors, bounded, ms_since, paired
from common import MESSAGE, Plan
from m1 import stream_step
from stats import across, summary


def _body(b: Bench, profile: str, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": f"agent:{b.agents[profile]['agent_slug']}",
        "messages": [{"role": "user", "content": MESSAGE}],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


async def _chat(b: Bench, profile: str) -> Call:
    t0 = time.perf_counter()
    try:
        r = await b.platform.post("/v1/chat/completions", json=_body(b, profile, stream=False))
        latency = ms_since(t0)
        if r.status_code != 200:
            return Call(False, latency, f"chat HTTP {r.status_code}: {r.text[:200]}")
        choice = r.json()["choices"][0]
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
        return Call(False, ms_since(t0), f"chat {type(exc).__name__}: {exc}")
    if choice.get("finish_reason") != "stop":
        return Call(False, latency, f"chat finish_reason {choice.get('finish_reason')}")
    return Call(True, latency, text=choice["message"]["content"] or "")


async def _chat_stream(b: Bench, profile: str) -> Call:
    t0 = time.perf_counter()
    call = Call(True)
    parts: list[str] = []
    done = False
    try:
        async with b.platform.stream(
            "POST", "/v1/chat/completions", json=_body(b, profile, stream=True)
        ) as r:
            if r.status_code != 200:
                await r.aread()
                return Call(False, ms_since(t0), f"chat stream HTTP {r.status_code}")
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    continue
                chunk = json.loads(data)
                if call.first_event_ms is None:
                    call.first_event_ms = ms_since(t0)
                if "error" in chunk:
                    call.ok, call.error = False, f"chat stream error: {data[:200]}"
                    continue
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        call.stamps_ms.append(ms_since(t0))
                        parts.append(content)
                if chunk.get("usage"):
                    call.events["usage"] += 1
    except (httpx.HTTPError, ValueError) as exc:
        return Call(False, ms_since(t0), f"chat stream {type(exc).__name__}: {exc}")
    call.latency_ms = ms_since(t0)
    call.text = "".join(parts)
    call.ttft_ms = call.stamps_ms[0] if call.stamps_ms else None
    if call.ok and not done:
        call.ok, call.error = False, "chat stream: no [DONE]"
    if call.ok and call.events["usage"] != 1:
        call.ok, call.error = False, "chat stream: no usage chunk"
    return call


def chat(b: Bench, profile: str = "fast") -> Any:
    return bounded(_chat(b, profile), PLATFORM_TIMEOUT)


def chat_stream(b: Bench, profile: str = "stream") -> Any:
    return bounded(_chat_stream(b, profile), PLATFORM_TIMEOUT)


async def openai_m1(b: Bench, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """Closed loop, one client: (direct, /v1/chat/completions) pairs in random order."""
    for _ in range(plan.rewarm):
        await chat(b)
    rounds = []
    for index in range(plan.m1_rounds):
        direct: list[float] = []
        through: list[float] = []
        diffs: list[float] = []
        errors = Errors()
        t0 = time.monotonic()
        for _ in range(plan.m1_pairs):
            if time.monotonic() > t0 + 90 or b.halted():
                break
            d, p = await paired(lambda: b.direct_call("fast"), lambda: chat(b))
            errors.add(d)
            errors.add(p)
            if d.ok and p.ok:
                direct.append(d.latency_ms)
                through.append(p.latency_ms)
                diffs.append(p.latency_ms - d.latency_ms)
        rounds.append(
            {
                "round": index + 1,
                "pairs": len(diffs),
                "added_ms": summary(diffs),
                "direct_ms": summary(direct),
                "platform_ms": summary(through),
                "errors": errors.json(),
            }
        )
        log(
            f"OpenAI M1 round {index + 1}: added p50 {rounds[-1]['added_ms'].get('p50')} "
            f"p99 {rounds[-1]['added_ms'].get('p99')} ms, errors {errors.count}"
        )
    return {
        "rounds": rounds,
        "added_p50_ms": across(rounds, "added_ms", "p50"),
        "added_p99_ms": across(rounds, "added_ms", "p99"),
    }


async def openai_m2(b: Bench, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """Streams: time to first token and gaps between chunks, against the direct stream."""
    rounds = []
    for index in range(plan.m2_rounds):
        await b.clear("stream")
        await b.script("stream", stream_step(plan), plan.m2_pairs * 2 + 4)
        for _ in range(2):
            await paired(lambda: b.direct_call("stream"), lambda: chat_stream(b))
        ttft_added: list[float] = []
        gaps_added: list[float] = []
        total_added: list[float] = []
        text_mismatch = 0
        errors = Errors()
        for _ in range(plan.m2_pairs):
            if b.halted():
                break
            d, p = await paired(lambda: b.direct_call("stream"), lambda: chat_stream(b))
            errors.add(d)
            errors.add(p)
            if not (d.ok and p.ok) or d.ttft_ms is None or p.ttft_ms is None:
                continue
            ttft_added.append(p.ttft_ms - d.ttft_ms)
            total_added.append(p.latency_ms - d.latency_ms)
            text_mismatch += d.text != p.text
            dg = [y - x for x, y in zip(d.stamps_ms, d.stamps_ms[1:], strict=False)]
            pg = [y - x for x, y in zip(p.stamps_ms, p.stamps_ms[1:], strict=False)]
            if len(dg) == len(pg):
                gaps_added.extend(y - x for x, y in zip(dg, pg, strict=True))
        rounds.append(
            {
                "round": index + 1,
                "pairs": len(ttft_added),
                "ttft_added_ms": summary(ttft_added),
                "gap_added_ms": summary(gaps_added),
                "total_added_ms": summary(total_added),
                "text_mismatches": text_mismatch,
                "errors": errors.json(),
            }
        )
        log(
            f"OpenAI M2 round {index + 1}: TTFT added p50 "
            f"{rounds[-1]['ttft_added_ms'].get('p50')} ms, gap added p99 "
            f"{rounds[-1]['gap_added_ms'].get('p99')} ms, errors {errors.count}"
        )
    await b.clear("stream")
    return {
        "rounds": rounds,
        "ttft_added_p50_ms": across(rounds, "ttft_added_ms", "p50"),
        "ttft_added_p99_ms": across(rounds, "ttft_added_ms", "p99"),
        "gap_added_p99_ms": across(rounds, "gap_added_ms", "p99"),
    }


async def openai_phase(b: Bench, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    return {"m1": await openai_m1(b, plan, log), "m2": await openai_m2(b, plan, log)}
