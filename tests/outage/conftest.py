"""A PostgreSQL of the tests' own, to stop and start under live processes.

The machine's PostgreSQL is shared and must never be restarted, so outage tests run against a
private cluster: ``initdb`` into a temporary directory, served on a free local port (and a
socket in that directory), stopped and started again on the same port at will.

Fixtures (all skip, saying why, when no PostgreSQL binaries can be found):

``private_postgres`` (session): a running :class:`PrivatePostgres`.
    ``url(dbname)`` a ``postgres://`` URL for ``DATABASE_URL``; ``stop()`` a fast shutdown (every
    session is cut, as in a restart) that returns once the server is down; ``start()`` the
    same cluster on the same port, returning once it accepts connections; ``running()``;
    ``terminate_sessions(dbname)`` cuts every session of one database but keeps the server up
    (what a PgBouncer restart or a network blip does to the app), returns how many;
    ``query(sql, params, dbname=...)`` runs one statement on a fresh connection.
    Binaries: ``OUTAGE_PG_BINDIR`` if set, else the newest ``/usr/lib/postgresql/*/bin``, else
    the ones bundled with the ``pgserver`` package. As root the server runs as the ``postgres``
    (or ``pgserver``) system user, since PostgreSQL refuses to run as root.

``outage_site`` (session): the database ``outage`` on that cluster, migrated with the project's
    ``migrate_schemas`` and seeded (``tests/outage/seed.py``) with one tenant, its admin and user
    API keys, and an agent whose provider is the fake LLM server under ``site.llm_key``
    (script it with ``fake_llm.script(site.llm_key, {...})``). Jobs and executions are wiped
    before each test that uses ``live_worker`` (see ``clean_outage_queue``).

``database_restored`` (autouse): after every test here the cluster is running again, whatever
    the test did, so one failing test does not take the next ones down with it.

``live_web``: a real web server serving ``config.asgi`` in a subprocess on that database; returns a
    :class:`LiveProcess` with ``url``, ``alive()``, ``log()`` (the tail of its output),
    ``story()`` (all of it but access lines and per-attempt connection noise), ``stop()``.

``live_worker``: a factory starting ``manage.py worker`` subprocesses on that database with
    short heartbeat and sweep periods (``FAST_WORKER_ENV``; keyword arguments override any
    setting, e.g. ``live_worker(WORKER_STALLED_AFTER_SECONDS="10")``); returns a
    :class:`LiveProcess` once both of its procrastinate workers are registered.

The logs of both are printed at teardown: pytest shows them when a test failed.

``wait_until(predicate, timeout, what)`` polls a condition against a deadline (never a fixed
sleep) and returns its first truthy value.

Every subprocess is stopped at teardown; the cluster is stopped and deleted at session end.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import ROOT, spawn_server

# Short heartbeat and sweep periods: the worker tests' (production defaults: config/settings.py).
from tests.worker.conftest import FAST_WORKER_ENV

DATABASE = "outage"


def wait_until(predicate: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def find_postgres_bindir() -> Path | None:
    """Where initdb/pg_ctl/postgres live: the override, the system's, or pgserver's."""
    wanted = ("initdb", "pg_ctl", "postgres")
    override = os.environ.get("OUTAGE_PG_BINDIR")
    candidates: list[Path] = [Path(override)] if override else []
    if not override:

        def version(path: Path) -> float:
            try:
                return float(path.parent.name)
            except ValueError:
                return 0.0

        candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
        spec = importlib.util.find_spec("pgserver")
        if spec is not None and spec.origin:
            candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    for candidate in candidates:
        if all((candidate / name).is_file() for name in wanted):
            return candidate
    return None


def _server_user() -> str | None:
    """The account the server runs as: ourselves, or an unprivileged one when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    pytest.skip("running as root with no 'postgres' or 'pgserver' account to run PostgreSQL as")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """One cluster in a temporary directory; see the module docstring."""

    host = "127.0.0.1"
    user = "postgres"

    def __init__(self, bindir: Path, base: Path, run_as: str | None) -> None:
        self.bindir = bindir
        self.base = base
        self.data = base / "data"
        self.socket_dir = base / "socket"
        self.logfile = base / "server.log"
        self.run_as = run_as
        self.port = _free_port()

    # ---- lifecycle ----

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            user=self.run_as,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.base,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({result.returncode}): {result.stderr}{result.stdout}\n"
                f"{self.log()}"
            )

    def init(self) -> None:
        self.socket_dir.mkdir()
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            for path in (self.base, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# tests/outage: a private, throwaway cluster\n"
                f"listen_addresses = '{self.host}'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "max_connections = 200\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )

    def start(self) -> None:
        """Start (same data, same port); returns once connections are accepted."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60", "start"
        )
        wait_until(self.running, 30, "private PostgreSQL accepting connections")

    def stop(self, mode: str = "fast") -> None:
        """Shut down (``fast``: sessions are cut, as in a restart); returns once it is down."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    # ---- use ----

    def url(self, dbname: str = DATABASE) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{dbname}"

    def query(self, sql: str, params: Any = None, *, dbname: str = DATABASE) -> list[tuple]:
        with psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def terminate_sessions(self, dbname: str = DATABASE) -> int:
        """Cut every session of ``dbname`` (but this one); the server stays up."""
        rows = self.query(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [dbname],
            dbname="postgres",
        )
        return int(rows[0][0])


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = find_postgres_bindir()
    if bindir is None:
        pytest.skip(
            "no PostgreSQL binaries: neither /usr/lib/postgresql/*/bin nor the pgserver package "
            "(set OUTAGE_PG_BINDIR to a directory holding initdb, pg_ctl and postgres)"
        )
    run_as = _server_user()
    # Not pytest's tmp_path: its parents are private to root, and the server may run as
    # another account that must reach its data directory.
    base = Path(tempfile.mkdtemp(prefix="cba-outage-pg-"))
    cluster = PrivatePostgres(bindir, base, run_as)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def database_restored(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "private_postgres" in request.fixturenames:
        cluster: PrivatePostgres = request.getfixturevalue("private_postgres")
        if not cluster.running():
            cluster.start()


@dataclass(frozen=True)
class OutageSite:
    cluster: PrivatePostgres
    database_url: str
    schema: str
    admin_key: str
    user_key: str
    agent_id: str
    llm_key: str
    llm_url: str

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of a web or worker process on this database."""
        env = dict(os.environ)
        for name in ("DATABASE_NAME", "DATABASE_MODE"):
            env.pop(name, None)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.test_settings",
                "DATABASE_URL": self.database_url,
                "PROVIDER_ALLOWED_PRIVATE": "127.0.0.1",
                "LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(overrides)
        return env


@pytest.fixture(scope="session")
def outage_site(private_postgres: PrivatePostgres, fake_llm: Any) -> OutageSite:
    private_postgres.query(f"CREATE DATABASE {DATABASE}", dbname="postgres")
    site_env = OutageSite(private_postgres, private_postgres.url(), "", "", "", "", "", "").env()
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate_schemas", "--verbosity", "0"],
        cwd=ROOT,
        env=site_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    llm_key = f"sk-outage-{uuid.uuid4().hex}"
    seeded = subprocess.run(
        [sys.executable, "-m", "tests.outage.seed", fake_llm.url, llm_key],
        cwd=ROOT,
        env=site_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    data = json.loads(seeded.stdout.strip().splitlines()[-1])
    return OutageSite(
        cluster=private_postgres,
        database_url=private_postgres.url(),
        llm_key=llm_key,
        llm_url=fake_llm.url,
        **data,
    )


@pytest.fixture
def clean_outage_queue(outage_site: OutageSite) -> Iterator[None]:
    """No jobs, workers or executions left over from another test, before or after."""

    def wipe() -> None:
        if not outage_site.cluster.running():
            return
        outage_site.cluster.query(
            "TRUNCATE public.procrastinate_events, public.procrastinate_periodic_defers, "
            "public.procrastinate_jobs, public.procrastinate_workers CASCADE"
        )
        outage_site.cluster.query(
            f'DELETE FROM "{outage_site.schema}".agents_executionevent; '
            f'DELETE FROM "{outage_site.schema}".agents_execution'
        )

    wipe()
    yield
    if not outage_site.cluster.running():
        outage_site.cluster.start()
    wipe()


class LiveProcess:
    def __init__(self, proc: subprocess.Popen[bytes], logfile: Path, url: str = "") -> None:
        self.proc = proc
        self.logfile = logfile
        self.url = url

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self, tail: int = 6000) -> str:
        return self.logfile.read_text(errors="replace")[-tail:]

    def story(self) -> str:
        """The log without access lines and per-attempt connection noise: for failures."""
        noise = ("127.0.0.1:", "\tIs the server running")
        lines = self.logfile.read_text(errors="replace").splitlines()
        return "\n".join(line for line in lines if not line.startswith(noise))[-40000:]

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM (lets runs finish), SIGKILL past ``timeout``; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


@contextlib.contextmanager
def web_process(site: OutageSite, logfile: Path, **env_overrides: str) -> Iterator[LiveProcess]:
    """The live tests' server serving ``config.asgi`` in a subprocess on the site's database (settings
    overridden by ``env_overrides``); its log is printed at the end."""
    with logfile.open("wb") as sink:
        proc, url = spawn_server(site.env(**env_overrides), sink, logfile)
    web = LiveProcess(proc, logfile, url)
    try:
        yield web
    finally:
        web.stop()
        print(f"--- web log (shown when the test failed) ---\n{web.story()}")


@pytest.fixture
def live_web(outage_site: OutageSite, tmp_path: Path) -> Iterator[LiveProcess]:
    with web_process(outage_site, tmp_path / "web.log") as web:
        yield web


def _registered_workers(site: OutageSite) -> int:
    return int(site.cluster.query("SELECT count(*) FROM public.procrastinate_workers")[0][0])


@pytest.fixture
def live_worker(
    outage_site: OutageSite, clean_outage_queue: None, tmp_path: Path
) -> Iterator[Callable[..., LiveProcess]]:
    started: list[LiveProcess] = []

    def spawn(**env_overrides: str) -> LiveProcess:
        before = _registered_workers(outage_site)
        logfile = tmp_path / f"worker-{len(started)}.log"
        with logfile.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "worker"],
                cwd=ROOT,
                env=outage_site.env(**{**FAST_WORKER_ENV, **env_overrides}),
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        worker = LiveProcess(proc, logfile)
        started.append(worker)

        def registered() -> bool:
            if not worker.alive():
                raise AssertionError(f"worker exited:\n{worker.log()}")
            return _registered_workers(outage_site) >= before + 2  # executions + maintenance

        wait_until(registered, 30, "worker registered")
        return worker

    try:
        yield spawn
    finally:
        for number, worker in enumerate(started):
            worker.stop()
            print(f"--- worker {number} log (shown when the test failed) ---\n{worker.story()}")
