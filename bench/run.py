"""Platform overhead benchmark: M1 (added latency), M2 (streaming), M3 (throughput).

``.venv/bin/python bench/run.py [--quick]`` or ``make bench`` (``BENCH_ARGS=--quick``).

Method: docs/performance.md and /work/shared/reference/performance-protocol.md. In one run it
starts everything it needs on 127.0.0.1 (its own database ``cb_bench``, the fake LLM, daphne
with production settings), measures every figure as the *difference* between a call through
the platform and the same upstream call made directly (paired, interleaved in random order),
writes ``bench/results/<timestamp>.json`` (raw figures) + ``.md`` (tables), ``latest.*``, and
rewrites ``docs/performance.md``. Both servers are killed at the end, even on error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "performance.md"
PY = sys.executable
HOST = "127.0.0.1"  # every socket of the benchmark is on loopback

# Targets of the protocol (2 cores).
TARGETS = {
    "m1_p50_ms": 3.0,
    "m1_p99_at_200_ms": 20.0,
    "m2_ttft_p50_ms": 5.0,
    "m2_gap_p99_ms": 2.0,
    "m3_per_s": 500.0,
    "stub_ratio": 10.0,
}
M3_P99_LIMIT_MS = 100.0
# Library functions worth showing in the profile table next to the platform's own code.
PROFILE_LANDMARKS = (
    "get_new_connection",
    "init_connection_state",
    "ensure_connection",
    "connect",
    "_execute",
    "execute",
    "dispatch",
    "__call__",
    "thread_handler",
)
M3_ERROR_LIMIT = 0.001
MESSAGE = "Say something short about circuit breakers."
STREAM_REPLY = " ".join(f"token{i:02d}" for i in range(30))


@dataclass(frozen=True)
class Plan:
    name: str
    extra_tenants: int = 10
    warmup: int = 150
    ladder_rounds: int = 80
    m1_rounds: int = 3
    m1_pairs: int = 300
    m1_rates: tuple[int, ...] = (10, 25, 50, 100, 200)
    m1_rate_seconds: float = 6.0
    m2_rounds: int = 3
    m2_pairs: int = 30
    m2_chunks: int = 10
    m2_chunk_delay: float = 0.020
    m3_levels: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    m3_seconds: float = 5.0
    m3_direct_seconds: float = 1.0
    db_executions: int = 200
    db_wait_seconds: float = 11.0
    profile_executions: int = 200
    rewarm: int = 20
    # Pairs in flight in the open loop; arrivals beyond it are dropped (and counted). Kept low:
    # the platform opens a PostgreSQL connection per request (see docs/performance.md).
    max_inflight: int = 8
    drain_seconds: float = 8.0


FULL = Plan("full")
QUICK = Plan(
    "quick",
    warmup=20,
    ladder_rounds=15,
    m1_rounds=2,
    m1_pairs=30,
    m1_rates=(10, 50),
    m1_rate_seconds=2.0,
    m2_rounds=2,
    m2_pairs=6,
    m3_levels=(1, 4),
    m3_seconds=2.0,
    m3_direct_seconds=0.5,
    db_executions=30,
    db_wait_seconds=1.0,
    profile_executions=40,
    rewarm=5,
    drain_seconds=5.0,
)


# ---------------------------------------------------------------------------------------------
# statistics


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def r3(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": r3(pct(values, 50)),
        "p90": r3(pct(values, 90)),
        "p99": r3(pct(values, 99)),
        "mean": r3(statistics.fmean(values)),
        "min": r3(min(values)),
        "max": r3(max(values)),
    }


def across(rounds: list[dict[str, Any]], *path: str) -> dict[str, Any]:
    """Median of a figure over rounds, with its spread (min..max)."""
    values = []
    for item in rounds:
        for key in path:
            item = item.get(key) if isinstance(item, dict) else None
        if isinstance(item, int | float):
            values.append(float(item))
    if not values:
        return {"median": None, "min": None, "max": None, "rounds": 0}
    return {
        "median": r3(statistics.median(values)),
        "min": r3(min(values)),
        "max": r3(max(values)),
        "rounds": len(values),
    }


def raw(values: list[float]) -> list[float]:
    return [round(v, 3) for v in values]


# ---------------------------------------------------------------------------------------------
# processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_facts() -> dict[str, Any]:
    """Read-only: the commit and whether the tree had local changes."""
    facts: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        facts["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        changed = [line[3:] for line in status.splitlines() if line.strip()]
        facts["local_changes"] = len(changed)
        facts["local_changes_files"] = changed[:50]
    return facts


def bench_env(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    """Production settings (config.settings, DEBUG off) with bench-only secrets."""
    from tenants.signing import generate_key_file  # needs no Django settings

    keydir = Path(tempfile.gettempdir()) / "cba-bench-jwt"
    key = generate_key_file(keydir / "bench.pem")
    field_key = base64.urlsafe_b64encode(hashlib.sha256(b"cb-bench-field-key").digest()).decode()
    env = dict(os.environ)
    if not args.database_url:
        env.pop("DATABASE_URL", None)  # our own database, not whatever the shell points at
    else:
        env["DATABASE_URL"] = args.database_url
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "0",
            "DATABASE_NAME": args.database,
            "SECRET_KEY": "bench-only-secret-key-" + hashlib.sha256(b"sk").hexdigest(),
            "API_KEY_HMAC_SECRET": "bench-only-hmac-" + hashlib.sha256(b"hmac").hexdigest(),
            "ALLOWED_HOSTS": ".localhost,localhost,127.0.0.1",
            "FIELD_ENCRYPTION_KEYS": f"bench={field_key}",
            "JWT_SIGNING_KEYS": f"bench={key}",
            "PROVIDER_ALLOWED_PRIVATE": HOST,  # the platform may call the fake on loopback
            "LOG_LEVEL": args.log_level,
            "DATA_DIR": str(workdir / "data"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


class Processes:
    """Children started by the benchmark; all of them are stopped by ``stop_all``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        handle = log.open("ab")  # a restarted server appends to its log
        proc = subprocess.Popen(  # noqa: S603
            argv,
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C of the terminal is handled by us, not them
        )
        handle.close()
        self.procs[name], self.logs[name] = proc, log
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def stop_all(self) -> None:
        for name in list(self.procs):
            with contextlib.suppress(Exception):
                self.stop(name)

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return ""
        return path.read_text(errors="replace")[-chars:]

    def cpu_seconds(self, name: str, part: str = "both") -> float | None:
        """CPU time of a child: user + system (``part`` "user" or "system" for one)."""
        proc = self.procs.get(name)
        if proc is None:
            return None
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        user, system = int(fields[11]) / ticks, int(fields[12]) / ticks
        return {"user": user, "system": system}.get(part, user + system)


def pid_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def total_cpu_busy_seconds() -> float | None:
    try:
        parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return (sum(parts[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1, trust_env=False).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f}s")


def run_checked(argv: list[str], env: dict[str, str], timeout: float, what: str) -> str:
    done = subprocess.run(  # noqa: S603
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr[-3000:]}")
    return done.stdout


class PgStats:
    """Counters of the bench database (pg_stat_database, pg_stat_activity)."""

    def __init__(self, db: dict[str, Any]) -> None:
        import psycopg

        info: dict[str, Any] = {"user": db["user"] or None}
        if db.get("host"):
            info["host"] = db["host"]
        if db.get("port"):
            info["port"] = int(db["port"])
        if db.get("password"):
            info["password"] = db["password"]
        self.dbname = db["name"]
        self.info = info
        self.tables_conn: Any = None
        # Watch from the maintenance database, so our own queries never count as the bench
        # database's transactions.
        try:
            self.conn = psycopg.connect(dbname="postgres", autocommit=True, **info)
        except psycopg.Error:
            self.conn = psycopg.connect(dbname=db["name"], autocommit=True, **info)
        self.lock = threading.Lock()

    def counters(self) -> dict[str, int]:
        with self.lock:
            row = self.conn.execute(
                "SELECT sessions, xact_commit, xact_rollback, tup_inserted, tup_updated, "
                "tup_returned, tup_fetched FROM pg_stat_database WHERE datname = %s",
                [self.dbname],
            ).fetchone()
        names = ["sessions", "xact_commit", "xact_rollback", "tup_inserted", "tup_updated"]
        names += ["tup_returned", "tup_fetched"]
        return dict(zip(names, [int(v) for v in row], strict=True))

    def connections(self) -> tuple[int, int]:
        """Client connections to the bench database, and to the whole server."""
        with self.lock:
            row = self.conn.execute(
                "SELECT count(*) FILTER (WHERE datname = %s), count(*) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                [self.dbname],
            ).fetchone()
        return int(row[0]), int(row[1])

    def backend_cpu(self) -> dict[int, float]:
        """CPU seconds so far of each PostgreSQL backend serving the bench database (read
        from /proc: the server runs on this machine)."""
        with self.lock:
            rows = self.conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", [self.dbname]
            ).fetchall()
        out = {}
        for (pid,) in rows:
            value = pid_cpu_seconds(int(pid))
            if value is not None:
                out[int(pid)] = value
        return out

    def table_counters(self) -> dict[str, list[int]]:
        """Per-table scan and write counters of the bench database (its own connection)."""
        import psycopg

        if self.tables_conn is None:
            self.tables_conn = psycopg.connect(dbname=self.dbname, autocommit=True, **self.info)
        rows = self.tables_conn.execute(
            "SELECT s.schemaname || '.' || s.relname, coalesce(s.seq_scan, 0), "
            "coalesce(s.seq_tup_read, 0), coalesce(s.idx_scan, 0), "
            "coalesce(s.idx_tup_fetch, 0), s.n_tup_ins, s.n_tup_upd "
            "FROM pg_stat_all_tables s JOIN pg_class c ON c.oid = s.relid "
            "WHERE NOT c.relisshared"  # shared catalogs count every database's work"
        ).fetchall()
        return {row[0]: [int(v) for v in row[1:]] for row in rows}

    def close(self) -> None:
        for conn in (self.conn, self.tables_conn):
            with contextlib.suppress(Exception):
                if conn is not None:
                    conn.close()


class DbGuard:
    """Watches PostgreSQL connections while load runs. The server may be shared with other
    people's work: when the server-wide count reaches ``max_connections - reserve``, the
    guard trips and the running phase stops sending (the phase records it)."""

    def __init__(self, stats: PgStats, max_connections: int, reserve: int) -> None:
        self.stats = stats
        self.max_connections = max_connections
        self.limit = max(max_connections - reserve, 10)
        self.tripped = threading.Event()
        self.trips: list[str] = []
        self.phase = "start"
        self.peaks: dict[str, dict[str, int]] = {}
        self.last = (0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pg-guard", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            try:
                bench, total = self.stats.connections()
            except Exception:  # noqa: S112 - a missed sample is not worth stopping for
                continue
            self.last = (bench, total)
            peak = self.peaks.setdefault(self.phase, {"bench_db": 0, "server": 0})
            peak["bench_db"] = max(peak["bench_db"], bench)
            peak["server"] = max(peak["server"], total)
            if total >= self.limit and not self.tripped.is_set():
                self.trips.append(self.phase)
                self.tripped.set()

    def begin(self, phase: str) -> None:
        self.phase = phase
        self.tripped.clear()

    def peak(self, phase: str) -> dict[str, int]:
        return dict(self.peaks.get(phase, {}))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def json(self) -> dict[str, Any]:
        return {
            "max_connections": self.max_connections,
            "limit": self.limit,
            "tripped_in": self.trips,
            "peaks": self.peaks,
        }


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
            "daphne_django_middleware": r3(med["platform_healthz"] - med["stub_get"]),
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


async def m2(b: Bench, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    rounds = []
    chunk_counts_in: Counter[int] = Counter()
    chunk_counts_out: Counter[int] = Counter()
    await b.clear("stream")
    await b.script("stream", stream_step(plan), 6)
    for _ in range(3):  # the stream path of a freshly started server, warmed
        await paired(lambda: b.direct_call("stream"), b.execute_stream)
    for index in range(plan.m2_rounds):
        await b.clear("stream")
        await b.script("stream", stream_step(plan), plan.m2_pairs * 2 + 4)
        ttft_d: list[float] = []
        ttft_p: list[float] = []
        ttft_added: list[float] = []
        first_event_added: list[float] = []
        gaps_d: list[float] = []
        gaps_p: list[float] = []
        gaps_added: list[float] = []
        total_added: list[float] = []
        mismatched = 0
        text_mismatch = 0
        errors = Errors()
        t0 = time.monotonic()
        deadline = t0 + 60
        for _ in range(plan.m2_pairs):
            if time.monotonic() > deadline or b.halted():
                break
            d, p = await paired(lambda: b.direct_call("stream"), b.execute_stream)
            errors.add(d)
            errors.add(p)
            if not (d.ok and p.ok) or d.ttft_ms is None or p.ttft_ms is None:
                continue
            chunk_counts_in[len(d.stamps_ms)] += 1
            chunk_counts_out[len(p.stamps_ms)] += 1
            ttft_d.append(d.ttft_ms)
            ttft_p.append(p.ttft_ms)
            ttft_added.append(p.ttft_ms - d.ttft_ms)
            if p.first_event_ms is not None:
                first_event_added.append(p.first_event_ms - d.ttft_ms)
            total_added.append(p.latency_ms - d.latency_ms)
            if d.text != p.text:
                text_mismatch += 1
            dg = [y - x for x, y in zip(d.stamps_ms, d.stamps_ms[1:], strict=False)]
            pg = [y - x for x, y in zip(p.stamps_ms, p.stamps_ms[1:], strict=False)]
            gaps_d.extend(dg)
            gaps_p.extend(pg)
            if len(dg) == len(pg):
                gaps_added.extend(y - x for x, y in zip(dg, pg, strict=True))
            else:
                mismatched += 1
        item = {
            "round": index + 1,
            "pairs": len(ttft_added),
            "seconds": round(time.monotonic() - t0, 2),
            "ttft_added_ms": summary(ttft_added),
            "first_event_added_ms": summary(first_event_added),
            "ttft_direct_ms": summary(ttft_d),
            "ttft_platform_ms": summary(ttft_p),
            "gap_added_ms": summary(gaps_added),
            "gap_direct_ms": summary(gaps_d),
            "gap_platform_ms": summary(gaps_p),
            "total_added_ms": summary(total_added),
            "chunk_count_mismatches": mismatched,
            "text_mismatches": text_mismatch,
            "errors": errors.json(),
        }
        rounds.append(item)
        log(
            f"M2 round {index + 1}: TTFT added p50 {item['ttft_added_ms'].get('p50')} "
            f"p99 {item['ttft_added_ms'].get('p99')} ms; gap added p50 "
            f"{item['gap_added_ms'].get('p50')} p99 {item['gap_added_ms'].get('p99')} ms; "
            f"chunk count mismatches {mismatched}/{len(ttft_added)}; errors {errors.count}"
        )
    await b.clear("stream")
    return {
        "chunks_scripted": plan.m2_chunks,
        "chunk_delay_ms": plan.m2_chunk_delay * 1000,
        "rounds": rounds,
        "ttft_added_p50_ms": across(rounds, "ttft_added_ms", "p50"),
        "ttft_added_p99_ms": across(rounds, "ttft_added_ms", "p99"),
        "gap_added_p50_ms": across(rounds, "gap_added_ms", "p50"),
        "gap_added_p99_ms": across(rounds, "gap_added_ms", "p99"),
        "gap_platform_p99_ms": across(rounds, "gap_platform_ms", "p99"),
        "chunks_in_histogram": dict(sorted(chunk_counts_in.items())),
        "chunks_out_histogram": dict(sorted(chunk_counts_out.items())),
    }


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
    b: Bench, plan: Plan, fresh: Callable[[str], Awaitable[None]], log: Callable[[str], None]
) -> dict[str, Any]:
    curve = []
    stopped_by = None
    for level in plan.m3_levels:
        phase = f"M3 {level} clients"
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
            f"M3 {level} clients: {item['throughput_per_s']}/s p50 "
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
    procs.stop("daphne")
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
        "inclusive_ms_per_execution": dict(list(functions.items())[:150]),
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


# ---------------------------------------------------------------------------------------------
# reporting


def verdict(value: float | None, target: float, *, at_least: bool = False) -> str:
    if value is None:
        return "n/a"
    ok = value >= target if at_least else value <= target
    return "met" if ok else "not met"


def fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def spread(item: dict[str, Any], unit: str = " ms") -> str:
    if item.get("median") is None:
        return "n/a"
    if item.get("rounds", 0) <= 1:
        return f"{item['median']:.2f}{unit}"
    return f"{item['median']:.2f}{unit} ({item['min']:.2f}-{item['max']:.2f})"


def headline(res: dict[str, Any]) -> dict[str, Any]:
    m1c, m2r, m3r = res["m1"]["closed"], res["m2"], res["m3"]
    opens = res["m1"]["open"]
    at200 = next((o for o in opens if o["target_rate"] == 200), None)
    top = max(opens, key=lambda o: o["target_rate"]) if opens else None
    direct_p50 = m1c["direct_p50_ms"]["median"]
    plat_p50 = m1c["platform_p50_ms"]["median"]
    ratio = plat_p50 / direct_p50 if direct_p50 and plat_p50 else None
    best = m3r["best"]
    through_best = best["throughput_per_s"] if best else None
    highest = (m3r.get("highest_observed") or {}).get("throughput_per_s")
    direct_best = m3r["direct_best_throughput_per_s"]
    out_hist = {int(k): v for k, v in m2r["chunks_out_histogram"].items()}
    n = m2r["chunks_scripted"]
    streams = sum(out_hist.values())
    equal = out_hist.get(n, 0)
    return {
        "m1_p50_ms": m1c["added_p50_ms"]["median"],
        "m1_open_at_200": at200,
        "m1_open_top": top,
        "m2_ttft_p50_ms": m2r["ttft_added_p50_ms"]["median"],
        "m2_ttft_p99_ms": m2r["ttft_added_p99_ms"]["median"],
        "m2_gap_p99_ms": m2r["gap_added_p99_ms"]["median"],
        "m2_streams": streams,
        "m2_streams_n_out": equal,
        "m3_best": through_best,
        "stub_latency_ratio": r3(ratio),
        "stub_throughput_ratio": r3(direct_best / highest) if direct_best and highest else None,
    }


def results_markdown(res: dict[str, Any]) -> str:
    h = headline(res)
    m1c, m2r, m3r, lad = res["m1"]["closed"], res["m2"], res["m3"], res["ladder"]
    env = res["environment"]
    lines: list[str] = []
    add = lines.append
    add(f"Run `{res['meta']['run_id']}` ({res['meta']['plan']}), {res['meta']['started_at']}, ")
    add(
        f"{env['cpu_count']} CPUs ({env['cpu_model']}), load average at start "
        f"{env['loadavg_start']}; total {res['meta']['seconds']:.0f} s.\n"
    )
    add("| # | Metric | Target | Measured | Verdict |")
    add("|---|---|---|---|---|")
    add(
        f"| M1 | Added latency, blocking persisted execution, p50 at 1 client "
        f"(median of {m1c['added_p50_ms']['rounds']} rounds, min-max) | ≤ "
        f"{TARGETS['m1_p50_ms']:.0f} ms | {spread(m1c['added_p50_ms'])} | "
        f"{verdict(h['m1_p50_ms'], TARGETS['m1_p50_ms'])} |"
    )
    at200 = h["m1_open_at_200"]
    if at200 is not None:
        p99 = at200["added_ms"].get("p99")
        achieved = (
            f"{fmt(p99, ' ms')} of the requests that ran: {at200['scheduled']} arrivals in "
            f"{at200['seconds']:.0f} s, at most {at200.get('max_inflight', '?')} in flight, "
            f"{at200['dropped_inflight_bound']} dropped at that bound; achieved "
            f"{fmt(at200['achieved_rate'], '/s', 0)}, errors {at200['errors']['count']}, "
            f"timed out {at200['timed_out']}"
        )
        ok = verdict(p99, TARGETS["m1_p99_at_200_ms"])
        if at200["achieved_rate"] < 190 or at200["dropped_inflight_bound"] or at200["timed_out"]:
            ok = "not met (rate not sustained)"
        add(f"| M1 | Added latency p99 at 200 req/s (open loop) | ≤ 20 ms | {achieved} | {ok} |")
    else:
        top = h["m1_open_top"]
        if top:
            add(
                f"| M1 | Added latency p99 at {top['target_rate']} req/s (open loop; 200/s "
                f"not run in this plan) | ≤ 20 ms at 200/s | {fmt(top['added_ms'].get('p99'), ' ms')}"
                f" | n/a |"
            )
    add(f"| M1 | Same, p99 at 1 client | — | {spread(m1c['added_p99_ms'])} | |")
    add(
        f"| M1 | `X-Platform-Overhead-Ms` reported by the platform, p50 / p99 at 1 client | — | "
        f"{spread(m1c['header_p50_ms'])} / {spread(m1c['header_p99_ms'])} | |"
    )
    add(
        f"| M2 | Added time to first token over SSE, p50 (p99) | ≤ 5 ms | "
        f"{spread(m2r['ttft_added_p50_ms'])} ({spread(m2r['ttft_added_p99_ms'])}) | "
        f"{verdict(h['m2_ttft_p50_ms'], TARGETS['m2_ttft_p50_ms'])} |"
    )
    add(
        f"| M2 | Added gap between chunks, p99 (p50) | ≤ 2 ms | "
        f"{spread(m2r['gap_added_p99_ms'])} ({spread(m2r['gap_added_p50_ms'])}) | "
        f"{verdict(h['m2_gap_p99_ms'], TARGETS['m2_gap_p99_ms'])} |"
    )
    add(
        f"| M2 | N chunks in = N out (live SSE client) | all streams | "
        f"{h['m2_streams_n_out']}/{h['m2_streams']} streams delivered all "
        f"{m2r['chunks_scripted']} chunks as separate events (chunk events per stream: "
        + ", ".join(f"{k}: {v} streams" for k, v in m2r["chunks_out_histogram"].items())
        + ") | "
        f"{'met' if h['m2_streams'] and h['m2_streams_n_out'] == h['m2_streams'] else 'not met'} |"
    )
    best = m3r["best"]
    top = m3r.get("highest_observed")
    best_txt = (
        f"{best['throughput_per_s']:.0f}/s at {best['concurrency']} clients (p99 "
        f"{best['p99_ms']:.1f} ms)"
        if best
        else "no level within limits"
    )
    if top and (not best or top["concurrency"] != best["concurrency"]):
        best_txt += (
            f"; highest seen {top['throughput_per_s']:.0f}/s at {top['concurrency']} clients "
            f"(p99 {top['p99_ms']:.0f} ms)"
        )
    add(
        f"| M3 | Executions/s until p99 > 100 ms or errors > 0.1 % | ≥ 500/s | {best_txt} | "
        f"{verdict(h['m3_best'], TARGETS['m3_per_s'], at_least=True)} |"
    )
    add(
        f"| — | Stub ≥ 10x faster than the platform: capacity (stub alone, peak calls/s over "
        f"platform peak executions/s); for information, platform/direct latency p50 at 1 "
        f"client | ≥ 10x | {fmt(h['stub_throughput_ratio'], 'x', 1)} "
        f"({fmt(m3r['direct_best_throughput_per_s'], '/s', 0)} vs "
        f"{fmt((m3r.get('highest_observed') or {}).get('throughput_per_s'), '/s', 0)}); "
        f"latency {fmt(h['stub_latency_ratio'], 'x', 1)} | "
        f"{verdict(h['stub_throughput_ratio'], TARGETS['stub_ratio'], at_least=True)} |"
    )
    add("")
    add("### M1 at 1 client, per round (ms)\n")
    add("| Round | Pairs | Added p50 | p90 | p99 | Header p50 | p99 | Direct p50 | Platform p50 |")
    add("|---|---|---|---|---|---|---|---|---|")
    for item in m1c["rounds"]:
        a, hd = item["added_ms"], item["overhead_header_ms"]
        add(
            f"| {item['round']} | {item['pairs']} | {fmt(a.get('p50'))} | {fmt(a.get('p90'))} | "
            f"{fmt(a.get('p99'))} | {fmt(hd.get('p50'))} | {fmt(hd.get('p99'))} | "
            f"{fmt(item['direct_ms'].get('p50'))} | {fmt(item['platform_ms'].get('p50'))} |"
        )
    add(
        "\n### M1 at a constant arrival rate (open loop, one (direct, platform) pair per arrival)\n"
    )
    bound = next((o.get("max_inflight") for o in res["m1"]["open"]), None)
    add(
        f"Arrivals that find {bound} pairs already in flight are dropped and counted, not "
        "queued in the client: past the platform's capacity the table shows the capacity and "
        "the drops, not an ever-growing queue.\n"
    )
    add(
        "| Target /s | Sent /s | Achieved /s | OK | Errors | Dropped at bound | Timed out | "
        "Added p50 | p90 | p99 | Platform p99 | Direct p99 | Client lag p99 | Stopped by guard |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for o in res["m1"]["open"]:
        a = o["added_ms"]
        add(
            f"| {o['target_rate']} | {fmt(o.get('sent_rate', o['offered_rate']), '', 0)} | "
            f"{fmt(o['achieved_rate'], '', 0)} | {o['completed_ok']} | {o['errors']['count']} | "
            f"{o['dropped_inflight_bound']} | {o['timed_out']} | {fmt(a.get('p50'))} | "
            f"{fmt(a.get('p90'))} | {fmt(a.get('p99'))} | "
            f"{fmt(o['platform_ms'].get('p99'))} | {fmt(o['direct_ms'].get('p99'))} | "
            f"{fmt(o['client_send_lag_ms'].get('p99'))} | "
            f"{'yes' if o.get('halted_by_db_guard') else 'no'} |"
        )
    add(
        f"\n### M2 per round ({m2r['chunks_scripted']} chunks, "
        f"{m2r['chunk_delay_ms']:.0f} ms apart, ms)\n"
    )
    add(
        "| Round | Pairs | TTFT added p50 | p99 | Direct TTFT p50 | Gap added p50 | p99 | "
        "Platform gap p50 | p99 | Count mismatches | Text mismatches |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for item in m2r["rounds"]:
        t, g, gp = item["ttft_added_ms"], item["gap_added_ms"], item["gap_platform_ms"]
        add(
            f"| {item['round']} | {item['pairs']} | {fmt(t.get('p50'))} | {fmt(t.get('p99'))} | "
            f"{fmt(item['ttft_direct_ms'].get('p50'))} | {fmt(g.get('p50'))} | "
            f"{fmt(g.get('p99'))} | {fmt(gp.get('p50'))} | {fmt(gp.get('p99'))} | "
            f"{item['chunk_count_mismatches']} | {item['text_mismatches']} |"
        )
    add("\n### M3 closed-loop ramp (blocking executions)\n")
    add(
        "| Clients | Executions/s | p50 ms | p99 ms | Errors | PostgreSQL connections (peak) | OK |"
    )
    add("|---|---|---|---|---|---|---|")
    top_rate = max((c["throughput_per_s"] or 0 for c in m3r["curve"]), default=0) or 1
    for c in m3r["curve"]:
        bar = "#" * max(1, round(20 * (c["throughput_per_s"] or 0) / top_rate))
        peak = c.get("db_connections_peak") or {}
        add(
            f"| {c['concurrency']} | {fmt(c['throughput_per_s'], '', 1)} `{bar}` | "
            f"{fmt(c['latency_ms'].get('p50'))} | {fmt(c['latency_ms'].get('p99'))} | "
            f"{c['errors']['count']} | {peak.get('bench_db', 'n/a')} (server "
            f"{peak.get('server', 'n/a')}) | {'yes' if c['within_limits'] else 'no'} |"
        )
    if m3r["stopped_by"]:
        add(f"\nRamp stopped at {m3r['stopped_by']}.")
    add("\nThe stub alone, same client, same levels (it must stay far ahead and flat):\n")
    add("| Clients | Direct calls/s | p50 ms | p99 ms | Errors |")
    add("|---|---|---|---|---|")
    for item in m3r["stub"]:
        add(
            f"| {item['concurrency']} | {fmt(item['throughput_per_s'], '', 0)} | "
            f"{fmt(item['latency_ms'].get('p50'))} | {fmt(item['latency_ms'].get('p99'))} | "
            f"{item['errors']} |"
        )
    add("\n### Request ladder (1 client, p50 of each rung, interleaved in random order)\n")
    add("| Rung | p50 ms | p90 ms |")
    add("|---|---|---|")
    names = {
        "stub_get": "GET the stub's /v1/models (loopback HTTP + minimal ASGI server)",
        "direct_chat": "Direct streamed chat completion to the stub (the M1 baseline)",
        "platform_healthz": "Platform GET /healthz (daphne + Django + middleware, no DB)",
        "platform_agent_get": "Platform GET /agents/{id} (+ API key auth, tenant, DRF, 1 query)",
        "platform_execute": "Platform POST /agents/{id}/execute (blocking, persisted)",
    }
    for key, label in names.items():
        rung = lad["rungs"].get(key, {})
        add(f"| {label} | {fmt(rung.get('p50'))} | {fmt(rung.get('p90'))} |")
    db = res.get("db_accounting") or {}
    cpu = res["m1"].get("cpu") or {}
    prof = res.get("profile") or {}
    log_info = res.get("server_log") or {}
    if "lines" in log_info:
        add(
            f"\nServer log over the run (all phases, daphne's default access log on): "
            f"{log_info['lines']} lines, {log_info['access_log_lines']} access-log lines, "
            f"{log_info['error_lines']} errors/tracebacks."
        )
        for kind, count in list((log_info.get("errors") or {}).items())[:6]:
            add(f"- {count}x `{kind.replace('`', '')[:300]}`")
    if prof.get("self_by_group"):
        add(
            f"\n### Sampling profile of the server ({prof['executions']} sequential blocking "
            f"executions, p50 {fmt(prof['latency_ms'].get('p50'))} ms under the profiler)\n"
        )
        add(
            f"Busy thread time per execution: {fmt(prof['busy_thread_ms_per_execution'], ' ms')}"
            f" (sampling period {fmt(prof['sampling_period_ms'], ' ms')}). Where the innermost "
            "known frame of each busy sample was:\n"
        )
        add("| Code | ms per execution | Share |")
        add("|---|---|---|")
        for name, item in sorted(
            prof["self_by_group"].items(), key=lambda kv: -(kv[1]["ms_per_execution"] or 0)
        ):
            if (item["share"] or 0) < 0.01:
                continue
            add(f"| {name} | {fmt(item['ms_per_execution'])} | {item['share'] * 100:.0f} % |")
        add("\nInclusive time of the heaviest functions (ms per execution, all threads):\n")
        add("| Function | ms per execution |")
        add("|---|---|")
        shown = 0
        for label, value in prof["inclusive_ms_per_execution"].items():
            if label.startswith(("agents/", "tenants/", "config/")) or any(
                key in label for key in PROFILE_LANDMARKS
            ):
                add(f"| `{label}` | {fmt(value)} |")
                shown += 1
            if shown >= 25:
                break
    add("")
    if cpu:
        add(
            f"CPU per blocking execution during M1 at 1 client: daphne "
            f"{fmt(cpu.get('daphne_ms_per_execution'), ' ms')}, fake LLM "
            f"{fmt(cpu.get('fake_ms_per_call'), ' ms')} per call, benchmark client "
            f"{fmt(cpu.get('client_ms_per_pair'), ' ms')} per pair, PostgreSQL backends "
            f"{fmt(cpu.get('postgres_ms_per_execution'), ' ms')} per execution, whole machine "
            f"{fmt(cpu.get('machine_ms_per_pair'), ' ms')} per pair."
        )
    if db.get("per_execution"):
        per = db["per_execution"]
        add(
            f"PostgreSQL per blocking execution ({db['executions']} sequential): "
            f"{fmt(per['sessions'])} new sessions, {fmt(per['xact_commit'])} commits, "
            f"{fmt(per['tup_inserted'])} rows inserted, {fmt(per['tup_updated'])} updated."
        )
    return "\n".join(lines) + "\n"


def _inclusive(prof: dict[str, Any], suffix: str) -> float | None:
    for label, value in (prof.get("inclusive_ms_per_execution") or {}).items():
        if label.endswith(suffix):
            return value
    return None


def where_time_goes(res: dict[str, Any]) -> str:
    """The "where the time goes" note, written from this run's figures only."""
    steps = res["ladder"]["steps_p50_ms"]
    m1c = res["m1"]["closed"]
    cpu = res["m1"].get("cpu") or {}
    db_run = res.get("db_accounting") or {}
    db = db_run.get("per_execution") or {}
    prof = res.get("profile") or {}
    header = m1c["header_p50_ms"]["median"]
    added = m1c["added_p50_ms"]["median"]
    out = [
        "Written by `bench/run.py` from this run's figures: the ladder of requests above (the "
        "same client asking for ever more of the stack, interleaved), the platform's own "
        "`X-Platform-Overhead-Ms`, CPU time per process, PostgreSQL's counters and a stdlib "
        "sampling profile of the server (`bench/profiled_daphne.py`; no profiler package is "
        "installed and none was added). Profile figures are thread-milliseconds per execution "
        "under the profiler, so they are indicative, not additive to the millisecond.",
        "",
        f"- **What the header sees.** The platform reports {fmt(header, ' ms')} p50 in "
        f"`X-Platform-Overhead-Ms`; measured from outside the same executions add "
        f"{fmt(added, ' ms')}. The header starts inside the view, so the ASGI server, the "
        "middleware (tenant resolution and API key authentication included) and the hop to "
        "the request's thread are not in it.",
        f"- **Fixed cost of a request.** Daphne + Django + middleware on a path that touches "
        f"no database (GET /healthz) costs ~{fmt(steps['daphne_django_middleware'], ' ms')} over "
        f"a bare ASGI server; authentication, tenant resolution, DRF and one query add "
        f"~{fmt(steps['auth_tenant_drf_one_query'], ' ms')} (GET /agents/{{id}}); the "
        f"execution itself ~{fmt(steps['execution_beyond_authenticated_get'], ' ms')} more, "
        f"of which the upstream call is ~{fmt(steps['of_which_upstream_call_direct'], ' ms')} "
        "when made directly.",
    ]
    groups = prof.get("self_by_group") or {}
    if groups:
        ranked = sorted(groups.items(), key=lambda kv: -(kv[1]["ms_per_execution"] or 0))
        top = "; ".join(
            f"{name} {item['ms_per_execution']:.1f} ms ({item['share'] * 100:.0f} %)"
            for name, item in ranked[:4]
        )
        threads = prof.get("threads_seen_busy")
        out.append(
            f"- **Profile.** {fmt(prof.get('busy_thread_ms_per_execution'), ' ms')} of busy "
            f"thread time per blocking execution; by the innermost known frame: {top}. "
            f"{threads} distinct threads ran platform code for {prof.get('executions')} "
            "sequential executions"
            + (
                ": a new thread per request (Django's ASGI handler gives every request its own "
                "asgiref thread-sensitive context, and asgiref a one-thread executor per "
                "context), paid in thread start-up and in anything kept per thread."
                if threads and threads >= 0.8 * (prof.get("executions") or 0)
                else "."
            )
            + " The sampler sees what each thread is doing, not CPU spent in the kernel "
            "(thread start-up, socket system calls); compare with the CPU figure below."
        )
    if db.get("xact_commit") is not None:
        sessions = db["sessions"]
        text = (
            f"- **Database.** Per blocking execution: {fmt(db['xact_commit'], '', 1)} "
            f"transactions (in autocommit each statement is one), {fmt(db['tup_inserted'], '', 1)}"
            f" rows inserted, {fmt(db['tup_updated'], '', 1)} updated, "
            f"{fmt(sessions)} new PostgreSQL sessions."
        )
        search_path = _inclusive(prof, ":_handle_search_path")
        if search_path:
            text += (
                f" django-tenants' `SET search_path` on cursor creation costs "
                f"~{search_path:.1f} ms per execution in the profile (a round trip each time "
                "a connection is (re)entered into a schema)."
            )
        if sessions >= 0.5:
            text += (
                " A new session for (nearly) every request: each one pays connect, "
                "authentication and a cold backend whose catalog caches must be refilled "
                "(see the catalog reads below), and the old connections linger until garbage "
                "collection, so a loaded server piles up connections towards "
                "`max_connections`."
            )
        else:
            text += " Connections are reused across requests (pooled)."
        catalog = {
            k: v
            for k, v in (db_run.get("tables_per_execution") or {}).items()
            if k.startswith("pg_catalog.")
        }
        reads = sum(v.get("idx_tup_fetch", 0) + v.get("seq_tup_read", 0) for v in catalog.values())
        if reads > 50 and sessions >= 0.5:
            text += (
                f" System catalog rows read per execution: ~{reads:.0f} (a fresh backend "
                "filling its caches)."
            )
        out.append(text)
    sniff = _inclusive(prof, "httpcore/_synchronization.py:current_async_library")
    if sniff and sniff >= 0.2:
        out.append(
            f"- **A failing import on every upstream call.** httpcore's "
            f"`current_async_library()` runs `import sniffio`, which is not installed; a "
            f"failed import is not cached, so every call searches `sys.path` on disk again: "
            f"~{sniff:.1f} ms per execution in the profile. Installing `sniffio` (a tiny "
            "pure-Python package) removes it."
        )
    if cpu.get("daphne_ms_per_execution"):
        per = cpu["daphne_ms_per_execution"]
        top_rate = ((res.get("m3") or {}).get("highest_observed") or {}).get("throughput_per_s")
        pg_cpu = cpu.get("postgres_ms_per_execution")
        psy = sum(
            item["ms_per_execution"] or 0
            for name, item in (prof.get("self_by_group") or {}).items()
            if name.startswith("PostgreSQL:")
        )
        pg_note = ""
        if pg_cpu is not None and psy and pg_cpu < 0.5 * psy:
            pg_note = (
                f" The profile's {psy:.1f} ms under psycopg is therefore mostly the driver's "
                "own work in the server process and waiting for round trips on a busy 2-core "
                "machine, not query execution in PostgreSQL."
            )
        out.append(
            f"- **CPU.** The daphne process uses {fmt(per, ' ms')} of CPU per blocking "
            f"execution at 1 client, {fmt(cpu.get('daphne_system_ms_per_execution'), ' ms')} "
            f"of it in the kernel; PostgreSQL's backends use "
            f"{fmt(cpu.get('postgres_ms_per_execution'), ' ms')} (the fake LLM "
            f"{fmt(cpu.get('fake_ms_per_call'), ' ms')} per call, this load generator "
            f"{fmt(cpu.get('client_ms_per_pair'), ' ms')} per pair).{pg_note} One Python "
            "process runs Python on one core at a time (the GIL): at this cost that is "
            f"~{1000 / per:.0f} executions/s per process, with PostgreSQL, the fake and the "
            f"load generator sharing the same 2 cores; M3's highest rate was "
            f"{fmt(top_rate, '/s', 0)}. 500/s would take ~{per * 500 / 1000:.0f} cores of "
            "server CPU at this cost per execution: it needs far less CPU per execution, not "
            "just more processes."
        )
    m2 = res.get("m2") or {}
    if m2.get("ttft_added_p50_ms", {}).get("median") is not None:
        out.append(
            f"- **Streaming.** The first token reaches an SSE client "
            f"{fmt(m2['ttft_added_p50_ms']['median'], ' ms')} (p50) later than a direct "
            "client. From the code (`agents/api/streaming.py`, `agents/services/event_log.py`)"
            ": before the upstream call the stream view creates the execution, then a "
            "detached task claims it and loads the agent and prices (database round trips "
            "on a thread of its own); every chunk is written to the event log (INSERT + "
            "NOTIFY) and read back by the follower before it is sent. Between chunks the "
            f"added gap is small at p50 ({fmt(m2['gap_added_p50_ms']['median'], ' ms')}) and "
            f"{fmt(m2['gap_added_p99_ms']['median'], ' ms')} at p99: the write/read round "
            "trip per chunk shows in the tail."
        )
    return "\n".join(out) + "\n"


def doc_markdown(res: dict[str, Any]) -> str:
    env = res["environment"]
    setup = res["setup"]
    versions = env["versions"]
    git = res["meta"].get("git", {})
    files = git.get("local_changes_files") or []
    changed = (": " + ", ".join(f"`{f}`" for f in files[:12])) if files else ""
    if len(files) > 12:
        changed += ", ..."
    return f"""# Performance

What the platform adds on top of the model call, measured against the physical limit (the same
request sent straight to the same LLM stub), following
`../shared/reference/performance-protocol.md`. **This file is generated** by
`bench/run.py`; every figure below comes from `bench/results/latest.json` (raw samples) and
`bench/results/latest.md` (the same tables), which the command rewrites.

## How to run

```sh
make bench                          # full run, ~4-5 min on 2 cores; rewrites this file
make bench BENCH_ARGS=--quick       # smoke test, ~1 min; bench/results/latest-quick.*
.venv/bin/python bench/run.py [--quick] [--database cb_bench] [--extra-tenants 10]
.venv/bin/python bench/run.py --render bench/results/latest.json   # re-render, no measuring
```

It needs only a PostgreSQL the platform can reach (the same resolution as the platform:
`DATABASE_URL`, else `localhost:5432`, else the embedded server) and uses its own database
(`cb_bench`, created and migrated with `manage.py migrate_schemas`). It then:

1. creates the tenant `bench` and {setup["tenants"] - 1} extra tenants if missing, two
   `openai`-kind credentials pointing at the fake LLM and one agent for each, and a fresh API
   key; it empties the `bench` tenant's executions so each run starts from the same table
   sizes;
2. starts the fake LLM (`python -m agents.fakellm`, zero think time) and the platform under
   daphne, both as subprocesses on 127.0.0.1, and stops both at the end, even on error;
3. warms up, then runs the phases below, each load phase on a freshly started and re-warmed
   server (so that no phase inherits the previous one's database connections); every loop
   is bounded by count and time, every call by a deadline;
4. watches PostgreSQL's connection count throughout: the server may be shared, so a phase
   stops sending when fewer than `--pg-reserve` (15) connections are left, and says so.

Method, in short:

- **Direct baseline**: the exact JSON body the platform sent upstream (read back from the
  fake's request log), sent by a bare `httpx.AsyncClient` configured like the platform's
  provider client (HTTP/1.1 keep-alive, pool 200/50), streaming, consumed fully with one
  `json.loads` per frame.
- **M1**: (direct, platform) pairs, the order within each pair random, 1 client, several
  rounds: percentiles of the per-pair difference; the median of the rounds is quoted with its
  min-max spread. Then the same pairs at a constant arrival rate (open loop, in-flight bounded),
  where achieved rate, errors, drops and timeouts are reported as they are.
- **M2**: the fake is scripted to stream {res["m2"]["chunks_scripted"]} chunks
  {res["m2"]["chunk_delay_ms"]:.0f} ms apart; paired (direct, platform SSE) calls: the added
  time to the first `chunk` event, the added gap between consecutive chunks (gap *i* through
  the platform minus gap *i* direct), and whether a live SSE client receives as many `chunk`
  events as the model sent (and the same text).
- **M3**: closed-loop ramp of blocking executions until p99 > 100 ms or errors > 0.1 %; the
  stub is then driven alone at every level, to show it is not the bottleneck.
- **Where the time goes**: a ladder of requests (bare ASGI server, `/healthz`, an
  authenticated GET, an execution, interleaved); CPU time of each process;
  `pg_stat_database` / `pg_stat_all_tables` deltas over sequential executions; and, in a last
  phase of its own, the server under a stdlib sampling profiler (`bench/profiled_daphne.py`).

## Environment of the last run

| | |
|---|---|
| Machine | {env["cpu_count"]} CPUs, {env["cpu_model"]}; {env["os"]} |
| Load average at start | {env["loadavg_start"]} |
| Python | {versions["python"]} |
| Django / DRF / django-tenants | {versions["django"]} / {versions["djangorestframework"]} / {versions["django-tenants"]} |
| ASGI server | daphne {versions["daphne"]} (Twisted {versions["twisted"]}, asyncio reactor), 1 process, its default access log on (to a file) |
| asgiref / channels | {versions["asgiref"]} / {versions["channels"]} |
| psycopg / httpx | {versions["psycopg"]} / {versions["httpx"]} |
| PostgreSQL server | {setup["postgres"]["server_version"]} ({setup["database"]["source"]}, database `{setup["database"]["name"]}`, `max_connections` {setup["postgres"]["max_connections"]}); Django `CONN_MAX_AGE` {setup["database"]["conn_max_age"]}, pool {setup["database"].get("pool") or "none"} |
| Tenants / schemas | {setup["tenants"]} tenants / {setup["postgres"]["schemas"]} schemas |
| Settings | `config.settings` (production), `DEBUG` {setup["settings"]["DEBUG"]}, all production middleware, `LOG_LEVEL` {setup["settings"]["LOG_LEVEL"]} (the production default; the platform logs nothing per request at INFO, daphne's access log does), channel layer `{setup["settings"]["CHANNEL_LAYER"].rsplit(".", 1)[-1]}` |
| Fake LLM | uvicorn (h11), 1 process, same machine |
| Load generator | this script, 1 process, asyncio + httpx, same machine |
| Commit | {git.get("commit", "?")}; {git.get("local_changes", "?")} paths with local changes at the time{changed} |

The load generator, the fake LLM, PostgreSQL and the platform share the same {env["cpu_count"]}
cores: at high rates the client itself takes CPU from the server (see the client lag column).
Absolute figures move from run to run on this shared machine; the paired differences and
ratios measured within one run are the figures to compare. The tree is worked on while the
benchmark runs: the commit and locally changed paths above say what was measured.

## Results

{results_markdown(res)}
## Where the time goes

{where_time_goes(res)}
"""


# ---------------------------------------------------------------------------------------------
# main


def environment() -> dict[str, Any]:
    return {
        "os": f"{platform.system()} {platform.release()}",
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "loadavg_start": tuple(round(x, 2) for x in os.getloadavg()),
        "versions": {
            "python": platform.python_version(),
            **{
                name: _version(name)
                for name in (
                    "django",
                    "djangorestframework",
                    "django-tenants",
                    "daphne",
                    "twisted",
                    "asgiref",
                    "channels",
                    "psycopg",
                    "httpx",
                    "uvicorn",
                )
            },
        },
    }


async def measure(
    plan: Plan,
    platform_url: str,
    fake_url: str,
    setup: dict[str, Any],
    procs: Processes,
    restart: Callable[[], None],
    stats: PgStats | None,
    pg_reserve: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    b = Bench(platform_url, fake_url, setup)
    if stats is not None:
        b.guard = DbGuard(stats, int(setup["postgres"]["max_connections"]), pg_reserve)
    res: dict[str, Any] = {"restarts": 0}

    async def fresh(phase: str) -> None:
        """A freshly started, warmed server for each load phase: the platform keeps one
        PostgreSQL connection per past request until garbage collection (see the docs), so
        a phase must not inherit the previous phase's pile."""
        await asyncio.to_thread(restart)
        res["restarts"] += 1
        await b.renew_platform()
        b.begin(phase)
        for _ in range(plan.rewarm):
            if b.halted():
                break
            await b.execute()

    try:
        b.begin("warm-up")
        res["warmup"] = await warm_up(b, plan, log)
        res["request_body_sent_upstream"] = b.bodies["fast"]
        b.begin("ladder")
        res["ladder"] = await ladder(b, plan, log)

        def cpu_now() -> list[float | None]:
            return [
                procs.cpu_seconds("daphne"),
                procs.cpu_seconds("fakellm"),
                time.process_time(),
                total_cpu_busy_seconds(),
                procs.cpu_seconds("daphne", "system"),
            ]

        await fresh("M1 1 client")
        cpu0 = cpu_now()
        pg0 = stats.backend_cpu() if stats is not None else {}
        closed = await m1_closed(b, plan, log)
        cpu1 = cpu_now()
        pg1 = stats.backend_cpu() if stats is not None else {}
        closed["db_connections_peak"] = b.peak("M1 1 client")
        pairs = sum(r["pairs"] for r in closed["rounds"]) or 1
        cpu: dict[str, Any] = {}
        if None not in cpu0 and None not in cpu1:
            used = [(a or 0.0) - (b0 or 0.0) for a, b0 in zip(cpu1, cpu0, strict=True)]
            cpu = {
                "daphne_ms_per_execution": r3(used[0] * 1000 / pairs),
                "daphne_system_ms_per_execution": r3(used[4] * 1000 / pairs),
                "fake_ms_per_call": r3(used[1] * 1000 / (2 * pairs)),
                "client_ms_per_pair": r3(used[2] * 1000 / pairs),
                "machine_ms_per_pair": r3(used[3] * 1000 / pairs),
                "postgres_ms_per_execution": r3(
                    sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items()) * 1000 / pairs
                )
                if pg1
                else None,
            }
        res["m1"] = {"closed": closed, "cpu": cpu, "open": []}
        for rate in plan.m1_rates:
            await fresh(f"M1 open {rate}/s")
            res["m1"]["open"].append(await m1_open(b, plan, rate, log))
        await fresh("M2")
        res["m2"] = await m2(b, plan, log)
        res["m2"]["db_connections_peak"] = b.peak("M2")
        res["m3"] = await m3(b, plan, fresh, log)
        if stats is not None:
            await fresh("DB accounting")
            res["db_accounting"] = await db_accounting(b, plan, stats, procs, log)
    finally:
        await b.aclose()
        if b.guard is not None:
            b.guard.stop()
            res["db_guard"] = b.guard.json()
    return res


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small version (~30-60 s)")
    parser.add_argument("--database", default=os.environ.get("BENCH_DATABASE_NAME", "cb_bench"))
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--extra-tenants", type=int, default=None)
    parser.add_argument("--log-level", default="INFO", help="platform LOG_LEVEL (default INFO)")
    parser.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rewrite docs/performance.md (default: full runs yes, --quick no)",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-profile", action="store_true", help="skip the profiling phase")
    parser.add_argument(
        "--pg-reserve",
        type=int,
        default=15,
        help="stop a load phase when PostgreSQL has fewer free connections than this "
        "(the server may be shared; default 15)",
    )
    parser.add_argument(
        "--render",
        metavar="JSON",
        help="measure nothing: rewrite the Markdown table and docs/performance.md from a "
        "results file (e.g. bench/results/latest.json)",
    )
    args = parser.parse_args()
    if args.render:
        res = json.loads(Path(args.render).read_text())
        table = results_markdown(res)
        Path(args.render).with_suffix(".md").write_text(table)
        if args.docs is not False:
            DOC.write_text(doc_markdown(res))
        print(table)
        return 0
    plan = QUICK if args.quick else FULL
    if args.extra_tenants is not None:
        plan = Plan(**{**plan.__dict__, "extra_tenants": args.extra_tenants})
    random.seed(args.seed)

    started = time.monotonic()
    started_at = dt.datetime.now(dt.UTC)
    run_id = started_at.strftime("%Y%m%dT%H%M%SZ")

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored (nohup, &)
    sys.path.insert(0, str(ROOT))
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cb-bench-"))
    procs = Processes(workdir)
    stats: PgStats | None = None
    env = bench_env(args, workdir)
    res: dict[str, Any] = {
        "meta": {
            "run_id": run_id,
            "plan": plan.name,
            "plan_parameters": {k: v for k, v in plan.__dict__.items()},
            "started_at": started_at.isoformat(timespec="seconds"),
            "git": git_facts(),
        },
        "environment": environment(),
        "targets": TARGETS,
    }
    try:
        log(f"migrating database {args.database} (migrate_schemas)")
        t0 = time.monotonic()
        run_checked(
            [PY, "manage.py", "migrate_schemas", "--verbosity", "0"], env, 900, "migrate_schemas"
        )
        res["meta"]["migrate_seconds"] = round(time.monotonic() - t0, 2)

        fake_port, platform_port = free_port(), free_port()
        fake_url = f"http://{HOST}:{fake_port}"
        fake_argv = [PY, "-m", "agents.fakellm", "--host", HOST, "--port", str(fake_port)]
        fake = procs.start("fakellm", fake_argv, env)
        wait_http(f"{fake_url}/v1/models", fake, 20, "fake LLM")

        log("creating tenants, credentials, agents")
        out = run_checked(
            [
                PY,
                "bench/setup_db.py",
                "--fake-url",
                fake_url,
                "--extra-tenants",
                str(plan.extra_tenants),
            ],
            env,
            900,
            "setup",
        )
        setup = json.loads(out.strip().splitlines()[-1])
        res["setup"] = {k: v for k, v in setup.items() if k != "api_key"}
        log(
            f"{setup['tenants']} tenants ({setup['tenants_created_now']} created now), "
            f"{setup['postgres']['schemas']} schemas, PostgreSQL "
            f"{setup['postgres']['server_version']}"
        )

        platform_url = f"http://{HOST}:{platform_port}"
        daphne_argv = [PY, "-m", "daphne", "-b", HOST, "-p", str(platform_port)]

        def restart() -> None:
            procs.stop("daphne")
            daphne = procs.start("daphne", [*daphne_argv, "config.asgi:application"], env)
            wait_http(f"{platform_url}/healthz", daphne, 60, "daphne")

        restart()
        res["environment"]["asgi_server"] = " ".join(daphne_argv[2:]) + " config.asgi:application"

        with contextlib.suppress(Exception):
            stats = PgStats(setup["database"])
        log(f"platform at {platform_url}, fake LLM at {fake_url}; measuring ({plan.name})")
        res.update(
            asyncio.run(
                measure(
                    plan,
                    platform_url,
                    fake_url,
                    setup,
                    procs,
                    restart,
                    stats,
                    args.pg_reserve,
                    log,
                )
            )
        )
        procs.stop("daphne")
        if not args.no_profile:
            log("profiling phase: daphne under the stdlib sampling profiler")
            profile_port = free_port()
            profile_url = f"http://{HOST}:{profile_port}"
            profile_out = workdir / "profile.json"
            profiled = procs.start(
                "daphne-profiled",
                [
                    PY,
                    "bench/profiled_daphne.py",
                    "-b",
                    HOST,
                    "-p",
                    str(profile_port),
                    "config.asgi:application",
                ],
                {**env, "BENCH_PROFILE_OUT": str(profile_out)},
            )
            wait_http(f"{profile_url}/healthz", profiled, 60, "profiled daphne")
            latencies, errors = asyncio.run(
                profile_phase(plan, profile_url, fake_url, setup, profiled)
            )
            res["profile"] = profile_summary(profile_out, latencies, errors, log)
    except BaseException as exc:
        res["failed"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {res['failed']} (server logs in {workdir})")
        for name in procs.procs:
            tail = procs.tail(name)
            if tail:
                print(f"--- {name} log (tail) ---\n{tail}", file=sys.stderr)
        raise
    finally:
        procs.stop_all()
        if stats is not None:
            stats.close()
        server_log = procs.tail("daphne", 50_000_000)
        lines = server_log.splitlines()
        bad = [
            i
            for i, line in enumerate(lines)
            if " ERROR " in line
            or (line.startswith("Traceback") and not (i and " ERROR " in lines[i - 1]))
        ]
        skip = ("Traceback", "During handling", "The above exception", " ", "\t")
        # Each error with the exception line that ends its traceback, counted by kind.
        kinds: Counter[str] = Counter()
        for i in bad:
            end = next(
                (
                    j
                    for j in range(i + 1, min(i + 120, len(lines)))
                    if lines[j] and not lines[j].startswith(skip)
                ),
                i,
            )
            head = _STAMP.sub("", lines[i])[:160]
            kinds[_IDS.sub("<id>", head + " | " + lines[end][:240])] += 1
        res["server_log"] = {
            "lines": len(lines),
            "access_log_lines": sum(1 for line in lines if '] "' in line),
            "error_lines": len(bad),
            "errors": dict(kinds.most_common(20)),
            "tail": server_log[-1500:],
        }
        res["meta"]["seconds"] = round(time.monotonic() - started, 1)
        name = run_id + ("-quick" if plan.name == "quick" else "")
        if "failed" in res:
            name += "-failed"
        latest = "latest-quick" if plan.name == "quick" else "latest"
        text = json.dumps(res, indent=1, default=str)
        (RESULTS / f"{name}.json").write_text(text)
        if "failed" not in res:
            (RESULTS / f"{latest}.json").write_text(text)
    shutil.rmtree(workdir, ignore_errors=True)  # server logs: kept only when a run fails
    table = results_markdown(res)
    (RESULTS / f"{name}.md").write_text(table)
    (RESULTS / f"{latest}.md").write_text(table)
    docs = args.docs if args.docs is not None else plan.name == "full"
    if docs:
        DOC.write_text(doc_markdown(res))
    log(f"wrote bench/results/{name}.json + .md, {latest}.*" + (", docs" if docs else ""))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
