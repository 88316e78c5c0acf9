"""ASGI servers side by side: daphne, uvicorn (uvloop + httptools) and granian.

``bench/run.py --servers daphne,uvicorn,granian``: after the main phases (which run on daphne),
each named server in turn is started on the same database, fake LLM, tenant, agents and API
key, warmed, and measured with the main phases' own functions in a short form: the ladder
(``/healthz`` p50), one M1 round at 1 client with the server's CPU per execution, one M2
round over SSE, a short M3 ramp, and a few executions over the agents WebSocket (ok/failed:
which servers serve every interface). The servers run in random order so that a drift of the
shared machine's load favours none of them systematically.

Every server gets the same log settings: its own logger at warning level and no access log of
its own (the platform writes its own access line per request at ``LOG_LEVEL``, the same under
every server), as the production command lines in ``platform/`` run daphne (``-v 0``). The main
phases keep daphne's bench command line (access log on) unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from client import Bench
from common import HOST, PY, Plan
from m1 import ladder, m1_closed
from m2 import m2
from m3 import m3
from servers import Processes, descendants, free_port, wait_http
from stats import r3, summary
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

SERVERS = ("daphne", "uvicorn", "granian")
APP = "config.asgi:application"
# Distributions whose versions the comparison records, per server.
VERSIONS = {
    "daphne": ("daphne", "twisted"),
    "uvicorn": ("uvicorn", "uvloop", "httptools", "websockets"),
    "granian": ("granian", "uvloop"),
}
WS_TIMEOUT = 15.0


def split_name(name: str) -> tuple[str, int]:
    """``granian:2`` → ("granian", 2): a server and its number of worker processes."""
    server, _, workers = name.partition(":")
    return server, int(workers) if workers else 1


def parse_servers(text: str) -> list[str]:
    """``--servers``: comma-separated names out of :data:`SERVERS`, each once; ``name:N`` runs
    N worker processes (uvicorn and granian; daphne has one)."""
    names = [name.strip() for name in text.split(",") if name.strip()]

    def valid(name: str) -> bool:
        server, _, workers = name.partition(":")
        if server not in SERVERS:
            return False
        if not workers:
            return True
        return server != "daphne" and workers.isdigit() and 1 <= int(workers) <= 16

    unknown = [name for name in names if not valid(name)]
    if unknown or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"names out of {', '.join(SERVERS)} (uvicorn/granian may add :N workers), each "
            f"once: {text!r}"
        )
    return names


def server_argv(name: str, port: int) -> list[str]:
    """The command line of ``name`` serving the platform on ``HOST:port``: one process, or N
    worker processes for ``name:N`` (granian: always under its supervisor)."""
    name, workers = split_name(name)
    if name == "daphne":
        return [PY, "-m", "daphne", "-b", HOST, "-p", str(port), "-v", "0", APP]
    if name == "uvicorn":
        # Lifespan on: config.asgi answers it (agents.mcp.app), and uvicorn then stops the MCP
        # session manager at shutdown instead of leaving it to the loop's end.
        return [
            PY, "-m", "uvicorn", "--host", HOST, "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--ws", "websockets",
            "--lifespan", "on", "--log-level", "warning", "--no-access-log",
            "--workers", str(workers), APP,
        ]  # fmt: skip
    if name == "granian":
        # As platform/Procfile runs it: "asgi" (not "asginl") sends lifespan events; --ws: the
        # agents WebSocket needs them.
        return [
            str(Path(PY).parent / "granian"), "--interface", "asgi", "--host", HOST,
            "--port", str(port), "--loop", "uvloop", "--workers", str(workers), "--ws",
            "--backpressure", "20000", "--log-level", "warning", "--no-access-log", APP,
        ]  # fmt: skip
    raise ValueError(name)


def comparison_plan(plan: Plan) -> Plan:
    """One round each, a short ramp: the comparison is meant to rank servers, not to repeat
    the main phases three times."""
    quick = plan.name == "quick"
    return dataclasses.replace(
        plan,
        warmup=plan.warmup if quick else 60,
        ladder_rounds=15 if quick else 40,
        m1_rounds=1,
        m1_pairs=60 if quick else 200,
        m2_rounds=1,
        m2_pairs=plan.m2_pairs,
        m3_levels=(1, 2, 4) if quick else (1, 2, 4, 8),
        m3_seconds=2.0 if quick else 3.0,
        m3_direct_seconds=0.3,
        rewarm=plan.rewarm,
    )


# ---------------------------------------------------------------------------------------------
# the agents WebSocket


async def ws_execution(url: str, api_key: str, agent_id: str) -> float:
    """One execution over ``/agents/ws``: auth, execute, wait for its terminal event; the
    milliseconds from ``execute`` to ``complete``. Raises on anything else."""
    async with asyncio.timeout(WS_TIMEOUT), connect(url, open_timeout=10) as conn:
        await conn.send(json.dumps({"type": "auth", "token": api_key}))
        reply = json.loads(await conn.recv())
        if reply.get("type") != "auth_success":
            raise RuntimeError(f"auth: {str(reply)[:200]}")
        t0 = time.perf_counter()
        await conn.send(
            json.dumps(
                {"type": "execute", "agent_id": agent_id, "message": "ws", "request_id": "b"}
            )
        )
        chunks = 0
        while True:
            message = json.loads(await conn.recv())
            kind = message.get("type")
            chunks += kind == "chunk"
            if kind == "complete":
                if not message.get("response"):
                    raise RuntimeError("complete without a response")
                return (time.perf_counter() - t0) * 1000
            if kind in ("error", "cancelled"):
                raise RuntimeError(f"{kind}: {str(message)[:200]}")


async def ws_check(url: str, api_key: str, agent_id: str, runs: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    for _ in range(runs):
        try:
            latencies.append(await ws_execution(url, api_key, agent_id))
        except (OSError, TimeoutError, RuntimeError, ValueError, WebSocketException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:240])
    return {
        "ok": bool(latencies) and not errors,
        "runs": runs,
        "completed": len(latencies),
        "latency_ms": summary(latencies),
        "errors": errors[:5],
    }


# ---------------------------------------------------------------------------------------------
# one server


def _log_errors(procs: Processes, name: str) -> int:
    lines = procs.tail(name, 50_000_000).splitlines()
    # The platform logs JSON lines (LOG_FORMAT json) or console lines; servers log plain text.
    marks = ('"level": "error"', '"level": "critical"', " ERROR ", " CRITICAL ")
    return sum(1 for line in lines if line.startswith("Traceback") or any(m in line for m in marks))


async def one_server(
    b: Bench,
    plan: Plan,
    name: str,
    setup: dict[str, Any],
    procs: Processes,
    env: dict[str, str],
    log: Callable[[str], None],
) -> dict[str, Any]:
    port = free_port()
    url = f"http://{HOST}:{port}"
    argv = server_argv(name, port)
    proc_name = f"asgi-{name}"
    out: dict[str, Any] = {
        "server": name,
        "command": " ".join([Path(argv[0]).name, *argv[1:]]).replace(f" {port}", " PORT"),
        "restarts": 0,
    }

    def restart() -> None:
        procs.stop(proc_name)
        proc = procs.start(proc_name, argv, env)
        wait_http(f"{url}/healthz", proc, 60, name)

    async def fresh(phase: str) -> None:
        """Started again and re-warmed for each load phase, as in the main phases."""
        t0 = time.monotonic()
        await asyncio.to_thread(restart)
        out["restarts"] += 1
        out.setdefault("startup_seconds", r3(time.monotonic() - t0))
        await b.renew_platform()
        b.begin(phase)
        for _ in range(plan.rewarm):
            if b.halted():
                break
            await b.execute()

    b.platform_url = url  # the same client, bodies and agents; only the server changes
    label = f"{name}: "
    try:
        await fresh(f"{label}warm-up")
        for _ in range(plan.warmup):
            await b.execute()
        first = await b.execute()
        if not first.ok:
            raise RuntimeError(f"execution failed: {first.error}")
        for _ in range(3):
            await b.execute_stream()
        lad = await ladder(b, plan, lambda text: log(label + text))
        out["healthz_ms"] = lad["rungs"]["platform_healthz"]
        out["agent_get_ms"] = lad["rungs"]["platform_agent_get"]
        out["ladder_errors"] = lad["errors"]["count"]

        await fresh(f"{label}M1 1 client")
        cpu0 = procs.cpu_seconds(proc_name, tree=True)
        system0 = procs.cpu_seconds(proc_name, "system", tree=True)
        closed = await m1_closed(b, plan, lambda text: log(label + text))
        cpu1 = procs.cpu_seconds(proc_name, tree=True)
        system1 = procs.cpu_seconds(proc_name, "system", tree=True)
        pairs = sum(r["pairs"] for r in closed["rounds"]) or 1
        out["processes"] = len(descendants(procs.procs[proc_name].pid))
        out["m1"] = {
            "pairs": pairs,
            "added_ms": closed["rounds"][0]["added_ms"],
            "overhead_header_ms": closed["rounds"][0]["overhead_header_ms"],
            "direct_ms": closed["rounds"][0]["direct_ms"],
            "errors": closed["rounds"][0]["errors"],
        }
        if cpu0 is not None and cpu1 is not None:
            out["cpu_ms_per_execution"] = r3((cpu1 - cpu0) * 1000 / pairs)
        if system0 is not None and system1 is not None:
            out["system_cpu_ms_per_execution"] = r3((system1 - system0) * 1000 / pairs)

        await fresh(f"{label}M2")
        streams = await m2(b, plan, lambda text: log(label + text))
        one = streams["rounds"][0]
        out["m2"] = {
            "pairs": one["pairs"],
            "ttft_added_ms": one["ttft_added_ms"],
            "gap_added_ms": one["gap_added_ms"],
            "chunk_count_mismatches": one["chunk_count_mismatches"],
            "text_mismatches": one["text_mismatches"],
            "errors": one["errors"],
        }
        ramp = await m3(b, plan, fresh, log, label)
        out["m3"] = {
            "best": ramp["best"],
            "highest_observed": ramp["highest_observed"],
            "stopped_by": ramp["stopped_by"],
            "curve": [
                {k: c[k] for k in ("concurrency", "throughput_per_s", "latency_ms", "errors")}
                for c in ramp["curve"]
            ],
        }
        ws_url = f"ws://{HOST}:{port}/agents/ws"
        runs = 5 if plan.name == "quick" else 20
        out["ws"] = await ws_check(ws_url, setup["api_key"], b.agents["fast"]["agent_id"], runs)
        log(
            f"{label}WebSocket {'ok' if out['ws']['ok'] else 'FAILED'} "
            f"({out['ws']['completed']}/{runs}, p50 {out['ws']['latency_ms'].get('p50')} ms)"
            + (f": {out['ws']['errors'][0]}" if out["ws"]["errors"] else "")
        )
    except Exception as exc:  # one server failing must not lose the others' figures
        out["failed"] = f"{type(exc).__name__}: {exc}"[:500]
        out["log_tail"] = procs.tail(proc_name, 2000)
        log(f"{label}FAILED: {out['failed']}")
    finally:
        await asyncio.to_thread(procs.stop, proc_name)
        out["log_error_lines"] = _log_errors(procs, proc_name)
    return out


async def servers_phase(
    b: Bench,
    plan: Plan,
    names: list[str],
    setup: dict[str, Any],
    procs: Processes,
    env: dict[str, str],
    versions: dict[str, str],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Each server in turn (random order); results keyed by server, in the order named."""
    small = comparison_plan(plan)
    order = random.sample(names, len(names))
    log("server comparison, in this order: " + ", ".join(order))
    t0 = time.monotonic()
    results: dict[str, Any] = {}
    for name in order:
        results[name] = await one_server(b, small, name, setup, procs, env, log)
        results[name]["versions"] = {d: versions.get(d, "?") for d in VERSIONS[split_name(name)[0]]}
    return {
        "order": order,
        "seconds": round(time.monotonic() - t0, 1),
        "plan": {
            k: getattr(small, k)
            for k in ("ladder_rounds", "m1_pairs", "m2_pairs", "m3_levels", "m3_seconds")
        },
        "servers": {name: results[name] for name in names},
        "fastest": fastest({name: results[name] for name in names}),
    }


def fastest(results: dict[str, Any]) -> dict[str, Any]:
    """The server with the lowest M1 added p50 among those that served every interface
    (HTTP, SSE and WebSocket without an error), and the highest M3 rate within limits."""
    complete = [
        name
        for name, r in results.items()
        if "failed" not in r
        and r.get("ws", {}).get("ok")
        and not r["m1"]["errors"]["count"]
        and not r["m2"]["errors"]["count"]
        and r["m2"]["pairs"]
    ]

    def m1(name: str) -> float:
        return float(results[name]["m1"]["added_ms"].get("p50") or float("inf"))

    def m3_best(name: str) -> float:
        return float((results[name]["m3"]["best"] or {}).get("throughput_per_s") or 0.0)

    return {
        "served_every_interface": complete,
        "by_m1_p50": min(complete, key=m1) if complete else None,
        "by_m3_peak": max(complete, key=m3_best) if complete else None,
    }
