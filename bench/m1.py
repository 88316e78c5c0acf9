"""Warm-up, the ladder and M1 (added latency, closed and open loop)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from client import Bench, Call, Errors, paired
from common import STREAM_REPLY, Plan
from stats import across, r3, raw, summary

# ---------------------------------------------------------------------------------------------
# phases


async def warm_up(b: Bench, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    errors = Errors()
    first = await b.execute()
    if not first.ok:
        raise RuntimeError(f"the first execution failed: {first.error}")
    await b.capture_body("fast")
    t0 = time.monotonic()
    for _ in range(plan.warmup):
        errors.add(await b.execute())
        errors.add(await b.direct_call("fast"))
    for _ in range(max(plan.warmup // 10, 3)):
        if b.halted():
            break
        await asyncio.gather(*(b.execute() for _ in range(4)))
    # Streams: script the stream key, warm both paths, capture the body.
    await b.clear("stream")
    await b.script("stream", stream_step(plan), 12)
    stream = await b.execute_stream()
    if not stream.ok:
        raise RuntimeError(f"the first stream failed: {stream.error}")
    await b.capture_body("stream")
    for _ in range(5):
        errors.add(await b.execute_stream())
        errors.add(await b.direct_call("stream"))
    await b.clear("stream")
    log(f"warm-up done in {time.monotonic() - t0:.1f}s, errors {errors.count}")
    return {
        "seconds": round(time.monotonic() - t0, 2),
        "errors": errors.json(),
        "db_connections_peak": b.peak("warm-up"),
    }


def stream_step(plan: Plan) -> dict[str, Any]:
    return {"reply": STREAM_REPLY, "chunks": plan.m2_chunks, "chunk_delay": plan.m2_chunk_delay}


async def ladder(b: Bench, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """Cheap 'where the time goes': the same client asks, in random order, for ever more of
    the stack. Medians of each rung; differences between rungs are what each layer adds."""
    agent = b.agents["fast"]["agent_id"]
    rungs: dict[str, Callable[[], Awaitable[Call]]] = {
        "stub_get": lambda: b.get(f"{b.fake_url}/v1/models", auth=False),
        "direct_chat": lambda: b.direct_call("fast"),
        "platform_healthz": lambda: b.get("/healthz"),
        "platform_agent_get": lambda: b.get(f"/agents/{agent}"),
        "platform_execute": lambda: b.execute(),
    }
    samples: dict[str, list[float]] = {name: [] for name in rungs}
    headers: list[float] = []
    errors = Errors()
    deadline = time.monotonic() + 60
    for _ in range(plan.ladder_rounds):
        if time.monotonic() > deadline or b.halted():
            break
        order = list(rungs)
        random.shuffle(order)
        for name in order:
            call = await rungs[name]()
            errors.add(call)
            if call.ok:
                samples[name].append(call.latency_ms)
                if call.overhead_header_ms is not None:
                    headers.append(call.overhead_header_ms)
    out = {name: summary(values) for name, values in samples.items()}
    med = {name: out[name].get("p50") or 0.0 for name in out}
    log("ladder p50 ms: " + ", ".join(f"{k} {v:.2f}" for k, v in med.items()))
    return {
        "rungs": out,
        "overhead_header_ms": summary(headers),
        "errors": errors.json(),
        "steps_p50_ms": {
            "loopback_http_minimal_asgi": r3(med["stub_get"]),
            "server_django_middleware": r3(med["platform_healthz"] - med["stub_get"]),
            "auth_tenant_drf_one_query": r3(med["platform_agent_get"] - med["platform_healthz"]),
            "execution_beyond_authenticated_get": r3(
                med["platform_execute"] - med["platform_agent_get"]
            ),
            "of_which_upstream_call_direct": r3(med["direct_chat"]),
        },
    }


async def m1_closed(b: Bench, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    rounds = []
    for index in range(plan.m1_rounds):
        direct: list[float] = []
        through: list[float] = []
        diffs: list[float] = []
        headers: list[float] = []
        errors = Errors()
        t0 = time.monotonic()
        deadline = t0 + 90
        for _ in range(plan.m1_pairs):
            if time.monotonic() > deadline or b.halted():
                break
            d, p = await paired(lambda: b.direct_call("fast"), b.execute)
            errors.add(d)
            errors.add(p)
            if d.ok and p.ok:
                direct.append(d.latency_ms)
                through.append(p.latency_ms)
                diffs.append(p.latency_ms - d.latency_ms)
                if p.overhead_header_ms is not None:
                    headers.append(p.overhead_header_ms)
        item = {
            "round": index + 1,
            "pairs": len(diffs),
            "seconds": round(time.monotonic() - t0, 2),
            "added_ms": summary(diffs),
            "direct_ms": summary(direct),
            "platform_ms": summary(through),
            "overhead_header_ms": summary(headers),
            "errors": errors.json(),
            "raw": {"direct_ms": raw(direct), "platform_ms": raw(through)},
        }
        rounds.append(item)
        log(
            f"M1 round {index + 1}: added p50 {item['added_ms'].get('p50')} "
            f"p99 {item['added_ms'].get('p99')} ms (header p50 "
            f"{item['overhead_header_ms'].get('p50')}), direct p50 "
            f"{item['direct_ms'].get('p50')} ms, errors {errors.count}"
        )
    return {
        "rounds": rounds,
        "added_p50_ms": across(rounds, "added_ms", "p50"),
        "added_p90_ms": across(rounds, "added_ms", "p90"),
        "added_p99_ms": across(rounds, "added_ms", "p99"),
        "header_p50_ms": across(rounds, "overhead_header_ms", "p50"),
        "header_p99_ms": across(rounds, "overhead_header_ms", "p99"),
        "direct_p50_ms": across(rounds, "direct_ms", "p50"),
        "direct_p99_ms": across(rounds, "direct_ms", "p99"),
        "platform_p50_ms": across(rounds, "platform_ms", "p50"),
        "platform_p99_ms": across(rounds, "platform_ms", "p99"),
    }


async def m1_open(b: Bench, plan: Plan, rate: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Open loop: a (direct, platform) pair starts every 1/rate s whatever happens to earlier
    ones; at most ``max_inflight`` pairs in flight (further arrivals are counted as dropped)."""
    loop = asyncio.get_running_loop()
    total = int(rate * plan.m1_rate_seconds)
    direct: list[float] = []
    through: list[float] = []
    diffs: list[float] = []
    headers: list[float] = []
    lags: list[float] = []
    errors = Errors()
    finished_at: list[float] = []
    inflight = 0
    dropped = 0

    async def one(scheduled: float) -> None:
        nonlocal inflight
        lags.append((loop.time() - scheduled) * 1000)
        try:
            d, p = await paired(lambda: b.direct_call("fast"), b.execute)
            errors.add(d)
            errors.add(p)
            if d.ok and p.ok:
                direct.append(d.latency_ms)
                through.append(p.latency_ms)
                diffs.append(p.latency_ms - d.latency_ms)
                if p.overhead_header_ms is not None:
                    headers.append(p.overhead_header_ms)
            finished_at.append(loop.time())
        finally:
            inflight -= 1

    tasks: list[asyncio.Task[None]] = []
    start = loop.time() + 0.05
    halted = False
    for i in range(total):
        if b.halted():
            halted = True
            break
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if inflight >= plan.max_inflight:
            dropped += 1
            continue
        inflight += 1
        tasks.append(asyncio.create_task(one(scheduled)))
    send_end = loop.time()
    timed_out = 0
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=plan.drain_seconds)
        timed_out = len(pending)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
    last = max(finished_at) if finished_at else loop.time()
    item = {
        "target_rate": rate,
        "seconds": plan.m1_rate_seconds,
        "scheduled": total,
        "started": len(tasks),
        "dropped_inflight_bound": dropped,
        "max_inflight": plan.max_inflight,
        "timed_out": timed_out,
        "halted_by_db_guard": halted,
        "db_connections_peak": b.peak(f"M1 open {rate}/s"),
        "completed_ok": len(diffs),
        "offered_rate": r3((len(tasks) + dropped) / max(send_end - start, 1e-9)),
        "sent_rate": r3(len(tasks) / max(send_end - start, 1e-9)),
        "achieved_rate": r3(len(diffs) / max(last - start, 1e-9)),
        "errors": errors.json(),
        "added_ms": summary(diffs),
        "direct_ms": summary(direct),
        "platform_ms": summary(through),
        "overhead_header_ms": summary(headers),
        "client_send_lag_ms": summary(lags),
        "raw": {"direct_ms": raw(direct), "platform_ms": raw(through)},
    }
    log(
        f"M1 open {rate}/s: achieved {item['achieved_rate']}/s, added p50 "
        f"{item['added_ms'].get('p50')} p99 {item['added_ms'].get('p99')} ms, errors "
        f"{errors.count}, dropped {dropped}, timed out {timed_out}"
    )
    return item
