"""M4 / M5: idle open streams on one node (SSE, then WebSocket).

Per kind: a freshly started server (``--server``); a few background executions that stay queued (the bench
starts no worker), so they are not finished and emit nothing for as long as the phase needs; N
followers of them, opened from this process with raw sockets (``m4_clients``). A stalled
*streamed* run cannot stay silent that long: the provider read timeout (60 s) ends it, and each
chunk it sends wakes every follower. The follower's path is the same either way (read the log,
wait for a NOTIFY). Measured on the server process: RSS (and PSS / USS from ``smaps_rollup``)
before and after opening N, summed over the server's processes (granian: its supervisor and
workers), per stream = delta / opened, and its threads; PostgreSQL connections
of the bench database with 0 and N streams open; CPU over ``m4_idle_seconds`` while N are open
and idle (followers must not poll); whether every follower got a heartbeat after it opened (SSE
``: keep-alive`` every ``SSE_HEARTBEAT_SECONDS``; the WebSocket ``heartbeat`` message every
``WS_HEARTBEAT_SECONDS``, and daphne's pings under daphne), and the
end (``cancelled``) once the runs are cancelled.

The bench tenant is measured without a plan (``--limits none``): no stream lease is taken. With
``--limits metered`` the plan caps streams at 100,000 per tenant and per key, out of reach, and
every stream then takes and renews a lease row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from client import Bench
from common import HOST, MESSAGE, Plan
from m4_clients import Follower, SseFollower, WsFollower, open_all
from servers import PgStats, Processes, descendants

EXECUTIONS = 4  # runs followed; follower i follows run i % EXECUTIONS
OPEN_PER_SECOND = 100.0
# An SSE attach with nothing to replay gets its response head with the first heartbeat.
OPEN_TIMEOUT = 45.0
SETTLE_SECONDS = 3.0
# How long after the last open every follower must have had a heartbeat.
HEARTBEAT_WAIT = {"sse": 15.0 + 10.0, "websocket": 20.0 + 10.0}
END_TIMEOUT = 120.0
TARGET_KIB = {"sse": 50.0, "websocket": 100.0}
TARGET_STREAMS = 10_000
FD_RESERVE = 300  # descriptors this process keeps for everything else


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit; children started later (the server) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def tree_memory_kib(root: int) -> dict[str, int]:
    """:func:`memory_kib` summed over ``root`` and its descendants (granian's workers)."""
    total: dict[str, int] = {}
    for pid in descendants(root):
        for key, value in memory_kib(pid).items():
            total[key] = total.get(key, 0) + value
    return total


def memory_kib(pid: int) -> dict[str, int]:
    """RSS of a process (status), PSS and USS (private clean + dirty) from smaps_rollup, KiB."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "Threads"):
                out["rss" if name == "VmRSS" else "threads"] = int(value.split()[0])
    with contextlib.suppress(OSError):
        rollup: dict[str, int] = {}
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, _, value = line.partition(":")
            with contextlib.suppress(ValueError, IndexError):
                rollup[name] = int(value.split()[0])
        if rollup:
            out["pss"] = rollup.get("Pss", 0)
            out["uss"] = rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)
    with contextlib.suppress(OSError):
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def nofile_of(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return " / ".join(line.split()[3:5])  # soft / hard
    return None


async def start_queued_runs(b: Bench, count: int) -> tuple[list[str], list[str], list[str]]:
    """``count`` background runs, queued (no worker): (execution ids, stream paths, their
    statuses a moment later: they must still be ``queued``)."""
    agent = b.agents["fast"]["agent_id"]
    body = {"input": {"message": MESSAGE}, "execution_config": {"mode": "background"}}
    ids, paths = [], []
    for _ in range(count):
        r = await b.platform.post(f"/agents/{agent}/execute", json=body)
        if r.status_code != 202:
            raise RuntimeError(f"queueing a run: HTTP {r.status_code} {r.text[:200]}")
        location = r.headers["location"]  # /agents/{a}/executions/{id}
        paths.append(location + "/stream")
        ids.append(location.rstrip("/").split("/")[-1])
    await asyncio.sleep(SETTLE_SECONDS)
    statuses = [
        str((await b.platform.get(f"/executions/{execution_id}")).json().get("status"))
        for execution_id in ids
    ]
    return ids, paths, statuses


async def wait_until(check: Callable[[], bool], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.25)
    return check()


async def one_kind(
    kind: str,
    b: Bench,
    plan: Plan,
    procs: Processes,
    stats: PgStats | None,
    fresh: Callable[[str], Awaitable[None]],
    log: Callable[[str], None],
) -> dict[str, Any]:
    soft, _ = raise_nofile()
    n = min(plan.m4_streams, max(soft - FD_RESERVE, 0))
    await fresh(f"M4 {kind}")
    pid = procs.procs["web"].pid
    port = int(b.platform_url.rsplit(":", 1)[1])
    res: dict[str, Any] = {
        "kind": kind,
        "target_streams": plan.m4_streams,
        "streams_asked": n,
        "limited_by_fds": n < plan.m4_streams,
        "nofile_bench": soft,
        "nofile_server": nofile_of(descendants(pid)[-1]),
        "executions": EXECUTIONS,
    }
    ids, paths, statuses = await start_queued_runs(b, EXECUTIONS)
    res["followed_statuses"] = statuses
    if any(status != "queued" for status in statuses):
        raise RuntimeError(f"the followed runs are not queued: {statuses} (a worker running?)")
    db = (lambda: stats.connections()[0]) if stats is not None else (lambda: None)
    mem0, db0, client0 = tree_memory_kib(pid), db(), memory_kib(os.getpid())

    # A queued run has no event yet: daphne sends an SSE response head only with the first
    # body bytes, the first heartbeat (SSE_HEARTBEAT_SECONDS after the request).
    def factory(i: int) -> Callable[[], Follower]:
        j = i % EXECUTIONS
        if kind == "sse":
            return lambda: SseFollower(HOST, port, paths[j], b.auth, 0)
        return lambda: WsFollower(HOST, port, b.auth, ids[j], 0)

    t0 = time.monotonic()
    followers, failures = await open_all(
        [factory(i) for i in range(n)], HOST, port, OPEN_PER_SECOND, OPEN_TIMEOUT
    )
    opened_at = time.monotonic()
    res["open_seconds"] = round(opened_at - t0, 2)
    res["opened"] = len(followers)
    res["open_failures"] = dict(sorted(failures.items(), key=lambda kv: -kv[1])[:10])
    log(f"M4 {kind}: {len(followers)}/{n} open in {res['open_seconds']} s")
    await asyncio.sleep(SETTLE_SECONDS)
    mem1, db1, client1 = tree_memory_kib(pid), db(), memory_kib(os.getpid())

    # CPU while idle.
    cpu0, w0 = procs.cpu_seconds("web", tree=True), time.monotonic()
    beats0 = sum(f.heartbeats for f in followers)
    await asyncio.sleep(plan.m4_idle_seconds)
    cpu1, w1 = procs.cpu_seconds("web", tree=True), time.monotonic()
    beats_window = sum(f.heartbeats for f in followers) - beats0
    cpu_pct = None
    if cpu0 is not None and cpu1 is not None:
        cpu_pct = round(100 * (cpu1 - cpu0) / (w1 - w0), 2)

    # Every follower has had a heartbeat since it opened (really open, end to end).
    await wait_until(
        lambda: all(f.heartbeats > f.beats_at_open or f.closed for f in followers),
        opened_at + HEARTBEAT_WAIT[kind],
    )
    beaten = sum(1 for f in followers if f.heartbeats > f.beats_at_open)
    alive = [f for f in followers if not f.closed]
    pongs: int | None = None
    if kind == "websocket":  # an application-level round trip on a sample, too
        sample = alive[:: max(1, len(alive) // 200)]
        for f in sample:
            assert isinstance(f, WsFollower)
            f.send_json({"type": "ping"})
        await wait_until(
            lambda: all(isinstance(f, WsFollower) and f.pongs for f in sample),
            time.monotonic() + 10,
        )
        pongs = sum(1 for f in sample if isinstance(f, WsFollower) and f.pongs)
        res["ping_sample"] = {"sent": len(sample), "pong": pongs}
    mem2, db2 = tree_memory_kib(pid), db()

    # The end: cancel the runs; every follower must get the terminal event (and SSE [DONE]).
    t_end = time.monotonic()
    for execution_id in ids:
        r = await b.platform.post(f"/executions/{execution_id}/cancel")
        if r.status_code not in (200, 202):
            res.setdefault("cancel_errors", []).append(f"HTTP {r.status_code}")
    await wait_until(lambda: all(f.ended.done() for f in followers), t_end + END_TIMEOUT)
    ended = sum(1 for f in followers if f.terminal)
    res["end_seconds"] = round(time.monotonic() - t_end, 2)
    if kind == "sse":
        res["terminal_event_before_done"] = sum(
            1 for f in followers if isinstance(f, SseFollower) and f.terminal_event
        )
    mem_end = tree_memory_kib(pid)
    for f in followers:
        f.close()
    await asyncio.sleep(SETTLE_SECONDS)
    mem_closed, db_closed = tree_memory_kib(pid), db()

    opened = max(len(followers), 1)

    def per(key: str, after: dict[str, int], before: dict[str, int]) -> float | None:
        if key not in after or key not in before:
            return None
        return round((after[key] - before[key]) / opened, 2)

    res.update(
        {
            "memory_kib": {
                "before": mem0,
                "open": mem1,
                "after_heartbeats": mem2,
                "after_end": mem_end,
                "after_close": mem_closed,
            },
            "per_stream_kib": {key: per(key, mem1, mem0) for key in ("rss", "pss", "uss")},
            "client_rss_per_stream_kib": per("rss", client1, client0),
            # Server threads per open stream (thread-sensitive sync work bound to a request).
            "threads_per_stream": per("threads", mem1, mem0),
            "db_connections": {"zero": db0, "open": db1, "held": db2, "closed": db_closed},
            "idle_window_seconds": round(w1 - w0, 2),
            "idle_cpu_percent": cpu_pct,
            "heartbeats_in_window": beats_window,
            "heartbeat_received": beaten,
            "still_open_before_end": len(alive),
            "ended": ended,
            "closed_before_end": sum(1 for f in followers if f.closed and not f.terminal),
            "errors_seen": _tally(f.error for f in followers if f.error),
        }
    )
    per_rss = res["per_stream_kib"]["rss"]
    # Memory within the target, and every stream asked for opened, held and ended.
    res["within_target"] = (
        per_rss is not None
        and per_rss <= TARGET_KIB[kind]
        and len(followers) == n
        and ended == len(followers)
    )
    res["reached_target_streams"] = len(followers) >= TARGET_STREAMS
    log(
        f"M4 {kind}: {len(followers)} open, RSS/stream {per_rss} KiB "
        f"(PSS {res['per_stream_kib']['pss']}, USS {res['per_stream_kib']['uss']}), DB "
        f"connections {db0} -> {db1}, idle CPU {cpu_pct} %, heartbeat {beaten}, ended "
        f"{ended} in {res['end_seconds']} s"
    )
    return res


def _tally(errors: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for error in errors:
        out[error] = out.get(error, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:10])


async def m4(
    b: Bench,
    plan: Plan,
    procs: Processes,
    stats: PgStats | None,
    fresh: Callable[[str], Awaitable[None]],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """M4 (memory per idle stream) and M5 (streams held, DB connections) for SSE and WS."""
    out: dict[str, Any] = {"target_streams": TARGET_STREAMS, "target_kib": TARGET_KIB}
    for kind in ("sse", "websocket"):
        try:
            out[kind] = await one_kind(kind, b, plan, procs, stats, fresh, log)
        except Exception as exc:  # one kind failing must not lose the other's figures
            out[kind] = {"kind": kind, "failed": f"{type(exc).__name__}: {exc}"[:300]}
            log(f"M4 {kind} FAILED: {out[kind]['failed']}")
    return out


# ---------------------------------------------------------------------------------------------
# report


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_m4(res: dict[str, Any]) -> list[str]:
    """The report's M4/M5 section (empty when the phase did not run)."""
    m = res.get("m4")
    if not m:
        return []
    lines = [
        "\n### M4 / M5 idle open streams on one node (one server)\n",
        "N followers (opened 100 a second) of 4 executions that are not finished and emit "
        "nothing (background runs left queued: the bench starts no worker); per stream = "
        "server RSS delta / streams opened. DB connections: the bench database's client "
        "connections with 0 and N streams open. Heartbeat got: followers that received a "
        "heartbeat after they opened; end got: followers that received the end after the "
        "runs were cancelled (in the seconds shown).\n",
        "| Kind | N asked | Opened | RSS / stream KiB (PSS, USS) | Threads / stream | "
        "DB connections 0 / N | Idle CPU % with N open | Heartbeat got | End got | Target | "
        f"Memory OK | ≥ {m['target_streams']:,} open |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, label in (("sse", "SSE"), ("websocket", "WebSocket")):
        row = m.get(kind)
        if not row:
            continue
        if "failed" in row:
            lines.append(f"| {label} | failed: {row['failed'][:160]} | | | | | | | | | | |")
            continue
        per, dbc = row["per_stream_kib"], row["db_connections"]
        target = m["target_kib"][kind]
        ok = row["within_target"]
        lines.append(
            f"| {label} | {row['streams_asked']} | {row['opened']} | {_f(per['rss'])} "
            f"({_f(per['pss'])}, {_f(per['uss'])}) | {_f(row.get('threads_per_stream'), 2)} | "
            f"{_f(dbc['zero'])} / {_f(dbc['open'])} | "
            f"{_f(row['idle_cpu_percent'], 2)} | {row['heartbeat_received']} | {row['ended']} "
            f"({_f(row.get('end_seconds'))} s) | "
            f"≤ {target:.0f} KiB | {'yes' if ok else 'no'} | "
            f"{'yes' if row['reached_target_streams'] else 'no'} |"
        )
    pool = ((res.get("setup") or {}).get("database") or {}).get("pool") or {}
    if pool:
        lines.append(
            f"\nThe platform's PostgreSQL pool holds at most {pool.get('max_size')} connections "
            "per process (plus the event hub's LISTEN session)."
        )
    for kind in ("sse", "websocket"):
        row = m.get(kind) or {}
        if (row.get("threads_per_stream") or 0) >= 0.5:
            lines.append(
                f"\n{kind}: the server holds about one thread per open stream "
                f"({row['threads_per_stream']:.2f}; threads {row['memory_kib']['before'].get('threads')}"
                f" -> {row['memory_kib']['open'].get('threads')}), part of its memory per stream."
            )
        if row.get("open_failures") or row.get("errors_seen") or row.get("limited_by_fds"):
            lines.append(
                f"\n{kind}: open failures {row.get('open_failures')}, errors "
                f"{row.get('errors_seen')}, limited by file descriptors: "
                f"{row.get('limited_by_fds')} (RLIMIT_NOFILE bench {row.get('nofile_bench')}, "
                f"server {row.get('nofile_server')})."
            )
    return lines
