"""Starting and stopping the fake LLM and daphne, machine facts, and the PostgreSQL
connection guard."""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import importlib.metadata
import os
import platform
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from common import HOST, ROOT

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
        # Servers with worker processes (granian) stop them on SIGTERM; any that outlive
        # their parent are killed, recognised by their start time (not a reused pid).
        below = {pid: _start_time(pid) for pid in descendants(proc.pid) if pid != proc.pid}
        proc.terminate()
        try:
            proc.wait(8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for pid, started in below.items():
            if started is not None and _start_time(pid) == started:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in list(self.procs):
            with contextlib.suppress(Exception):
                self.stop(name)

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return ""
        return path.read_text(errors="replace")[-chars:]

    def cpu_seconds(self, name: str, part: str = "both", *, tree: bool = False) -> float | None:
        """CPU time of a child: user + system (``part`` "user" or "system" for one). With
        ``tree``, of the child and all its living descendants (granian serves from worker
        processes it starts itself)."""
        proc = self.procs.get(name)
        if proc is None:
            return None
        if tree:
            return tree_cpu_seconds(proc.pid, part)
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        user, system = int(fields[11]) / ticks, int(fields[12]) / ticks
        return {"user": user, "system": system}.get(part, user + system)


def _start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def descendants(root: int) -> list[int]:
    """``root`` and every living process below it (parent links read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(root: int, part: str = "both") -> float | None:
    """CPU time of ``root`` and its living descendants (children that already exited and were
    waited for are in the parent's cutime/cstime, which is added too)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, seen = 0.0, False
    for pid in descendants(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seen = True
        user = int(fields[11]) + int(fields[13])
        system = int(fields[12]) + int(fields[14])
        total += {"user": user, "system": system}.get(part, user + system) / ticks
    return total if seen else None


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
                    "uvloop",
                    "httptools",
                    "websockets",
                    "granian",
                )
            },
        },
    }
