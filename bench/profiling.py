"""The profiling phase: daphne under the stdlib sampling profiler."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from client import Bench, Errors
from common import Plan
from stats import r3, summary


async def profile_phase(
    plan: Plan,
    platform_url: str,
    fake_url: str,
    setup: dict[str, Any],
    proc: subprocess.Popen[bytes],
) -> tuple[list[float], Errors]:
    """Sequential blocking executions against daphne under the stdlib sampling profiler
    (bench/profiled_daphne.py), recorded between SIGUSR1 and SIGUSR2."""
    b = Bench(platform_url, fake_url, setup)
    latencies: list[float] = []
    errors = Errors()
    try:
        for _ in range(30):
            await b.execute()
        proc.send_signal(signal.SIGUSR1)
        await asyncio.sleep(0.2)
        deadline = time.monotonic() + 30
        for _ in range(plan.profile_executions):
            if time.monotonic() > deadline:
                break
            call = await b.execute()
            errors.add(call)
            if call.ok:
                latencies.append(call.latency_ms)
        await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGUSR2)
    finally:
        await b.aclose()
    return latencies, errors


def profile_summary(
    out: Path, latencies: list[float], errors: Errors, log: Callable[[str], None]
) -> dict[str, Any]:
    for _ in range(50):
        if out.exists():
            break
        time.sleep(0.1)
    if not out.exists():
        return {"error": "the profiler wrote nothing"}
    data = json.loads(out.read_text())
    n = len(latencies) or 1
    busy = data["busy_thread_seconds"] or 1e-9

    def per_exec(seconds: float) -> float:
        return seconds * 1000 / n

    groups = {
        name: {"share": r3(value / busy), "ms_per_execution": r3(per_exec(value))}
        for name, value in data["self_by_group"].items()
    }
    interesting = (
        "agents/",
        "tenants/",
        "config/",
        "django",
        "rest_framework/",
        "psycopg",
        "httpcore/",
        "httpx/",
        "asgiref/",
        # The ASGI server's frames too, and enough rows that the stage markers of the doc's
        # "What a request costs" (bench/report_costs.py) are kept.
        "daphne/",
        "twisted/",
    )
    functions = {
        label: r3(per_exec(value))
        for label, value in data["inclusive_top"].items()
        if label.startswith(interesting)
    }
    leaves = {label: r3(per_exec(value)) for label, value in data["self_top"].items()}
    result = {
        "executions": len(latencies),
        "latency_ms": summary(latencies),
        "errors": errors.json(),
        "sampling_period_ms": r3(data["seconds"] * 1000 / max(data["samples"], 1)),
        "samples": data["samples"],
        "busy_thread_ms_per_execution": r3(per_exec(busy)),
        "threads_seen_busy": data.get("threads_seen_busy"),
        "self_by_group": groups,
        "inclusive_ms_per_execution": dict(list(functions.items())[:250]),
        "stages_ms_per_execution": {
            name: r3(per_exec(value)) for name, value in (data.get("stages") or {}).items()
        },
        "self_ms_per_execution": dict(list(leaves.items())[:30]),
        "stacks_ms_per_execution": {
            stack: r3(per_exec(value)) for stack, value in list(data["stacks_top"].items())[:20]
        },
    }
    top = sorted(groups.items(), key=lambda kv: -(kv[1]["ms_per_execution"] or 0))[:5]
    log(
        f"profile: {result['busy_thread_ms_per_execution']} busy thread-ms per execution; "
        + ", ".join(f"{k.split(' (')[0]} {v['ms_per_execution']}" for k, v in top)
    )
    return result
