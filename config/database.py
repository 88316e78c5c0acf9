"""Which PostgreSQL the platform uses.

Resolution order, the same for the server, the worker and the tests:

``DATABASE_MODE`` (auto, local, embedded) can force step 2 or 3.

1. ``DATABASE_URL`` when set (``postgres://user:pass@host:port/name?sslmode=...``);
2. else a PostgreSQL answering on localhost:5432 (user ``postgres``, no password: the
   packaged-server default on a developer machine or CI);
3. else an embedded PostgreSQL from the ``pgserver`` package, with its data under ``.data/pg``
   (git-ignored), so that a newcomer with nothing installed can run the platform.

PostgreSQL is required in every case: tenants live in schemas.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 5432


@dataclass(frozen=True)
class ResolvedDatabase:
    source: str  # "DATABASE_URL", "local", "embedded"
    settings: dict[str, Any]

    def describe(self) -> str:
        host = self.settings.get("HOST") or "socket"
        return f"{self.source} PostgreSQL at {host}:{self.settings.get('PORT') or '-'}/{self.settings['NAME']}"


def parse_database_url(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(
            f"DATABASE_URL must be a postgres:// URL (schemas need PostgreSQL), got {parts.scheme!r}"
        )
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured("DATABASE_URL names no database")
    options = dict(parse_qsl(parts.query))
    host = options.pop("host", None) or unquote(parts.hostname or "")
    try:
        port = parts.port
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL has a bad port: {exc}") from None
    return {
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(port or ""),
        "OPTIONS": options,
    }


def _ensure_database(name: str, **conninfo: Any) -> None:
    """Create database ``name`` on the server if it is missing (the name is validated)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dbname="postgres", user="postgres", autocommit=True, **conninfo) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _local_server_answers(name: str) -> bool:
    import psycopg

    try:
        _ensure_database(name, host=LOCAL_HOST, port=LOCAL_PORT, connect_timeout=2)
    except psycopg.Error:
        return False
    return True


def _embedded(data_dir: Path, name: str) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import, in every process, when XDG_RUNTIME_DIR is unset
            # (root, containers); pgserver then uses /tmp/runtime-<uid>, which is fine.
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:  # wheels exist for CPython 3.9-3.12 on x86-64 only
        raise ImproperlyConfigured(
            "No DATABASE_URL, no PostgreSQL on localhost:5432, and the embedded server (pgserver) "
            "is not installed on this platform. Install PostgreSQL or set DATABASE_URL."
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    # "stop": the server stops when the last process that started or joined it exits.
    server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
    _stop_quietly_at_exit(server)
    socket_dir = dict(parse_qsl(urlsplit(server.get_uri()).query))["host"]
    _ensure_database(name, host=socket_dir)
    return {
        "NAME": name,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": socket_dir,
        "PORT": "",
        "OPTIONS": {},
    }


_quiet_exits: set[int] = set()


def _stop_quietly_at_exit(server: Any) -> None:
    """Replace pgserver's exit hook (every process that uses the embedded server has one; the
    last process to exit stops the server) with one that cannot make noise or leak it:

    - ``make run``'s processes (web server, its reloader, the worker) all get Ctrl-C at once;
      a second Ctrl-C during the exit hook interrupted ``pg_ctl stop`` (same process group)
      and raised KeyboardInterrupt inside the hook, which Python prints as a traceback. The
      hook now ignores SIGINT while it runs, and reports a failure in one log line;
    - a process that exits without running exit hooks (killed, or a worker's forced exit)
      stayed in pgserver's list of users forever, so no later process ever stopped the
      server: dead processes are dropped from the list first;
    - this process's own pooled connections are closed before the server stops, so that
      they are not cut from under its pool (which warned about each).
    """
    if id(server) in _quiet_exits:
        return
    _quiet_exits.add(id(server))
    cleanup = server._cleanup
    atexit.unregister(cleanup)

    def stop_if_last() -> None:
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
        try:
            _close_own_pool()
            with server._lock:
                users = server.global_process_id_list
                users.put([pid for pid in users.get() if _process_alive(pid)])
            cleanup()
        except Exception as exc:  # at exit: one line, never a traceback
            logging.getLogger(__name__).warning("embedded PostgreSQL not stopped: %s", exc)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    atexit.register(stop_if_last)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _close_own_pool() -> None:
    try:
        from django.db import connections

        close_pool = getattr(connections["default"], "close_pool", None)
        if close_pool is not None:
            close_pool()
    except Exception:  # Django not configured, no pool: nothing of ours is connected
        return


def resolve_database(*, base_dir: Path, default_name: str) -> ResolvedDatabase:
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return ResolvedDatabase("DATABASE_URL", parse_database_url(url))
    if not default_name.replace("_", "").isalnum():
        raise ImproperlyConfigured(f"DATABASE_NAME={default_name!r}: use letters, digits and _")
    mode = os.environ.get("DATABASE_MODE", "auto").strip() or "auto"
    if mode not in {"auto", "local", "embedded"}:
        raise ImproperlyConfigured(f"DATABASE_MODE={mode!r}: use auto, local or embedded")
    if mode != "embedded" and _local_server_answers(default_name):
        return ResolvedDatabase(
            "local",
            {
                "NAME": default_name,
                "USER": "postgres",
                "PASSWORD": "",
                "HOST": LOCAL_HOST,
                "PORT": str(LOCAL_PORT),
                "OPTIONS": {},
            },
        )
    if mode == "local":
        raise ImproperlyConfigured(
            f"DATABASE_MODE=local but no PostgreSQL answers on {LOCAL_HOST}:{LOCAL_PORT}"
        )
    return ResolvedDatabase("embedded", _embedded(base_dir / ".data" / "pg", default_name))


# ---- availability: what the platform does while PostgreSQL is unreachable ----


def database_unavailable(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an error that caused it, means the database could not be reached or
    dropped the connection (a restart, a failover, a pooler cut): worth a 503 and a retry, not
    a 500. Django wraps psycopg's errors, procrastinate wraps them again (ConnectorException),
    so the whole ``__cause__``/``__context__`` chain is looked at."""
    from django.db import InterfaceError as DjangoInterfaceError
    from django.db import OperationalError as DjangoOperationalError

    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        unreachable: tuple[type[BaseException], ...] = ()
    else:
        # PoolTimeout (no connection in time) and AdminShutdown (terminated by the server)
        # are OperationalErrors too.
        unreachable = (psycopg.OperationalError, psycopg.InterfaceError)
    unreachable += (DjangoOperationalError, DjangoInterfaceError)
    seen: set[int] = set()
    current = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, unreachable):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def discard_broken_connections() -> None:
    """Test every idle connection of this process's pool (Django's, when DATABASE_POOL is on)
    and replace the dead ones. Called when a request met an unreachable database: after a
    restart every idle connection is dead, and without this each would fail one more request.
    Dead sockets fail their test at once; the replacements connect in the pool's background."""
    from django.db import connection

    pool = getattr(connection, "pool", None)
    if pool is None:
        return
    try:
        pool.check()
    except Exception:  # best effort: the request is answered 503 anyway
        logging.getLogger(__name__).debug("pool check failed", exc_info=True)


class OutageLog:
    """Says once that the database became unreachable and once that it is back (with how long
    it was gone), however many requests or retries meet the outage in between: a restart
    must not bury the log under one traceback per attempt. Thread-safe (web requests run on
    many threads).

    ``steady_for()`` tells how long the database has been reachable without a break, as far
    as this process saw: a sweeper that takes silent workers for dead should not trust
    heartbeats that nobody could write while the database was away.
    """

    def __init__(self, logger: logging.Logger, label: str) -> None:
        self._logger = logger
        self.label = label  # who speaks in the log: "web", "worker host:pid"
        self._lock = threading.Lock()
        self._since: float | None = None
        self._steady_since = time.monotonic()
        # Outages so far: lets a component that acts once per outage tell whether one began
        # since it last looked, even if it never met the outage itself.
        self.count = 0

    @property
    def in_outage(self) -> bool:
        return self._since is not None

    def steady_for(self) -> float:
        """Seconds since the last outage ended (or since the process started); 0 during one."""
        if self._since is not None:
            return 0.0
        return time.monotonic() - self._steady_since

    def failed(self, exc: BaseException) -> bool:
        """Record a failure; True when it starts an outage (and was logged)."""
        with self._lock:
            if self._since is not None:
                return False
            self._since = time.monotonic()
            self.count += 1
        self._logger.warning("%s: database unreachable (%s)", self.label, _one_line(exc))
        return True

    def recovered(self) -> float | None:
        """Record a success; the outage's length in seconds when this ends one (and was logged)."""
        if self._since is None:  # the common case, without taking the lock
            return None
        with self._lock:
            if self._since is None:
                return None
            now = time.monotonic()
            lasted = now - self._since
            self._since = None
            self._steady_since = now
        self._logger.warning("%s: database reachable again after %.1fs", self.label, lasted)
        return lasted


# The process's own record of database outages: web requests and worker loops report to it.
database_outage = OutageLog(logging.getLogger("config.database"), "web")


def _one_line(exc: BaseException) -> str:
    # The innermost cause says what happened (procrastinate's wrapper only "Database error.").
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return (" ".join(str(exc).split()) or type(exc).__name__)[:300]
