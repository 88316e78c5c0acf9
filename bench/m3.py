"""M3: throughput (closed loop) and the PostgreSQL accounting of one execution."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from client import Bench, Call, Errors
from common import M3_ERROR_LIMIT, M3_P99_LIMIT_MS, Plan
from servers import PgStats, Processes
from stats import r3, summary


async def closed_loop(
    call: Callable[[], Awaitable[Call]],
    concurrency: int,
    seconds: float,
    limit: int,
    halted: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = Errors()
    started = 0
    t0 = loop.time()
    deadline = t0 + seconds

    async def worker() -> None:
        nonlocal started
        while loop.time() < deadline and started < limit and not halted():
            started += 1
            result = await call()
            errors.add(result)
            if result.ok:
                latencies.append(result.latency_ms)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = loop.time() - t0
    total = len(latencies) + errors.count
    return {
        "concurrency": concurrency,
        "seconds": r3(elapsed),
        "ok": len(latencies),
        "throughput_per_s": r3(len(latencies) / elapsed) if elapsed else None,
        "error_rate": r3(errors.count / total) if total else None,
        "latency_ms": summary(latencies),
        "errors": errors.json(),
        "halted_by_db_guard": halted(),
    }


async def m3(
    b: Bench,
    plan: Plan,
    fresh: Callable[[str], Awaitable[None]],
    log: Callable[[str], None],
    label: str = "",
) -> dict[str, Any]:
    """The ramp; ``label`` prefixes its phase names (the server comparison runs it per server,
    and each server's connection peaks must stay its own)."""
    curve = []
    stopped_by = None
    for level in plan.m3_levels:
        phase = f"{label}M3 {level} clients"
        await fresh(phase)
        item = await closed_loop(b.execute, level, plan.m3_seconds, 100_000, b.halted)
        item["db_connections_peak"] = b.peak(phase)
        p99 = item["latency_ms"].get("p99") or 0.0
        item["within_limits"] = bool(
            item["ok"]
            and p99 <= M3_P99_LIMIT_MS
            and (item["error_rate"] or 0) <= M3_ERROR_LIMIT
            and not item["halted_by_db_guard"]
        )
        curve.append(item)
        log(
            f"{label}M3 {level} clients: {item['throughput_per_s']}/s p50 "
            f"{item['latency_ms'].get('p50')} p99 {p99} ms errors {item['errors']['count']} "
            f"db connections peak {item['db_connections_peak']}"
        )
        await asyncio.sleep(0.5)
        if not item["within_limits"]:
            stopped_by = f"{level} clients: p99 {p99} ms, error rate {item['error_rate']}" + (
                ", PostgreSQL connection guard tripped" if item["halted_by_db_guard"] else ""
            )
            break
    # The stub alone at every level: its p99 must stay flat and its rate far above ours.
    stub = []
    for level in plan.m3_levels:
        direct = await closed_loop(
            lambda: b.direct_call("fast"), level, plan.m3_direct_seconds, 100_000
        )
        stub.append(
            {
                "concurrency": level,
                "throughput_per_s": direct["throughput_per_s"],
                "latency_ms": direct["latency_ms"],
                "errors": direct["errors"]["count"],
            }
        )
    log(
        "stub alone: "
        + ", ".join(
            f"{s['concurrency']}c {s['throughput_per_s']:.0f}/s p99 {s['latency_ms'].get('p99')}"
            for s in stub
        )
    )
    good = [c for c in curve if c["within_limits"]]
    best = max(good, key=lambda c: c["throughput_per_s"] or 0) if good else None
    top = max(curve, key=lambda c: c["throughput_per_s"] or 0) if curve else None
    return {
        "p99_limit_ms": M3_P99_LIMIT_MS,
        "error_limit": M3_ERROR_LIMIT,
        "curve": curve,
        "stopped_by": stopped_by,
        "best": (
            {
                "throughput_per_s": best["throughput_per_s"],
                "concurrency": best["concurrency"],
                "p99_ms": best["latency_ms"].get("p99"),
            }
            if best
            else None
        ),
        "highest_observed": (
            {
                "throughput_per_s": top["throughput_per_s"],
                "concurrency": top["concurrency"],
                "p99_ms": top["latency_ms"].get("p99"),
            }
            if top
            else None
        ),
        "stub": stub,
        "direct_best_throughput_per_s": max(
            (s["throughput_per_s"] or 0 for s in stub), default=None
        ),
    }


async def db_accounting(
    b: Bench, plan: Plan, stats: PgStats, procs: Processes, log: Callable[[str], None]
) -> dict[str, Any]:
    """Database work per blocking execution: pg_stat_database deltas over N sequential
    executions. Idle backends publish their counters late (PostgreSQL 15: up to 10 s), so we
    wait for that before, and stop the server (its backends exit and publish) after."""
    tables_before = stats.table_counters()
    await asyncio.sleep(plan.db_wait_seconds)
    before = stats.counters()
    errors = Errors()
    ok = 0
    for _ in range(plan.db_executions):
        call = await b.execute()
        errors.add(call)
        ok += call.ok
    await b.platform.aclose()  # our keep-alive connections go first
    procs.stop("web")
    await asyncio.sleep(1.5)
    after = stats.counters()
    tables_after = stats.table_counters()
    delta = {k: after[k] - before[k] for k in before}
    per = {k: r3(v / ok) if ok else None for k, v in delta.items()}
    names = ["seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch", "n_tup_ins", "n_tup_upd"]
    tables = {}
    for table, values in tables_after.items():
        old = tables_before.get(table, [0] * len(values))
        moved = [new - was for new, was in zip(values, old, strict=True)]
        if any(moved) and ok:
            tables[table] = {n: r3(v / ok) for n, v in zip(names, moved, strict=True) if v}
    busiest = dict(
        sorted(
            tables.items(),
            key=lambda kv: -(kv[1].get("seq_tup_read", 0) + kv[1].get("idx_tup_fetch", 0)),
        )[:15]
    )
    log(
        f"DB per execution: sessions {per['sessions']}, commits {per['xact_commit']}, "
        f"inserts {per['tup_inserted']}, updates {per['tup_updated']}"
    )
    return {
        "executions": ok,
        "errors": errors.json(),
        "delta": delta,
        "per_execution": per,
        "tables_per_execution": busiest,
        "wait_before_seconds": plan.db_wait_seconds,
    }
