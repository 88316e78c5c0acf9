"""Shared fixtures: two tenant personas, credentials for each role, and a live ASGI server.

The personas (``alpha`` and ``bravo``) are created once per session and committed, so that a
live server in another process sees them too. Tests that change data do it inside their own
transaction (the ``db`` fixture), which rolls back.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from django.test import Client
from django_tenants.utils import schema_context

from agents.fakellm import FakeServer, start_in_thread
from tenants.models import Domain, Tenant
from tenants.roles import Role
from tenants.services import api_key_create, tenant_create

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Persona:
    tenant: Tenant
    host: str
    admin_key: str
    user_key: str
    readonly_key: str

    @property
    def slug(self) -> str:
        return self.tenant.slug

    @property
    def schema(self) -> str:
        return self.tenant.schema_name


def ensure_tenant(slug: str) -> Tenant:
    """Get or create a tenant. Idempotent: the schema survives tests that truncate public tables."""
    host = f"{slug}.localhost"
    with schema_context("public"):
        return _ensure_tenant(slug, host)


def _ensure_tenant(slug: str, host: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        schema = Tenant.schema_for_slug(slug)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [schema]
            )
            schema_exists = cursor.fetchone() is not None
        if schema_exists:
            tenant = Tenant(slug=slug, name=slug.title(), schema_name=schema)
            tenant.save(verbosity=0)
            Domain.objects.get_or_create(
                domain=host, defaults={"tenant": tenant, "is_primary": True}
            )
        else:
            tenant = tenant_create(slug=slug, name=slug.title(), domain=host, actor="tests").tenant
    return tenant


def make_persona(slug: str) -> Persona:
    tenant = ensure_tenant(slug)
    keys = {
        role: api_key_create(tenant=tenant, role=role, name=f"{role} persona", actor="tests").key
        for role in (Role.ADMIN, Role.USER, Role.READONLY)
    }
    return Persona(
        tenant, f"{slug}.localhost", keys[Role.ADMIN], keys[Role.USER], keys[Role.READONLY]
    )


@pytest.fixture(autouse=True)
def _forget_cached_rows() -> Iterator[None]:
    """Cached key rows, plans and run configurations outlive a test's rolled-back transaction
    (a rollback sends no signal): each test starts from the database, not from what an earlier
    test cached."""
    from agents.core.run_config import forget_run_config
    from tenants.key_cache import forget_credentials
    from tenants.plans import forget_limits

    forget_credentials()
    forget_limits()
    forget_run_config()
    yield
    forget_credentials()
    forget_limits()
    forget_run_config()


@pytest.fixture(scope="session", autouse=True)
def _collect_stray_connections(django_db_setup: None) -> Iterator[None]:
    """Close what still holds the test database open before it is dropped (PostgreSQL refuses
    to drop a database in use): event hubs of ended loops close their LISTEN connection within
    a moment; asgiref's worker thread keeps its connection until told."""
    yield
    import threading

    for thread in threading.enumerate():
        if thread.name == "execution-event-hub":
            thread.join(timeout=5)
    # sync_to_async calls made from async tests ran on asgiref's one shared worker thread,
    # whose database connection is still open: close it there.
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)
    # Connections other threads gave back to the process-wide pool stay open in it.
    close_pool = getattr(connections["default"], "close_pool", None)
    if close_pool is not None:
        close_pool()
    # Whatever is still connected now (a connection left in the thread-local storage of a
    # thread that has ended, closed only when the garbage collector gets to it) is cut off.
    _terminate_other_sessions(connections["default"].settings_dict)


def _terminate_other_sessions(db: dict[str, Any]) -> None:
    import psycopg

    params = {"dbname": "postgres", "user": db["USER"] or None, "password": db["PASSWORD"] or None}
    params.update(
        {key: value for key, value in (("host", db["HOST"]), ("port", db["PORT"])) if value}
    )
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [db["NAME"]],
        )


@pytest.fixture(scope="session")
def personas(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> dict[str, Persona]:
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        return {slug: make_persona(slug) for slug in ("alpha", "bravo")}


def _current(personas: dict[str, Persona], slug: str) -> Persona:
    """The persona, rebuilt if a transactional test emptied the public tables (tenant rows and
    keys go; the tenant's schema and its data stay)."""
    persona = personas[slug]
    if not Tenant.objects.filter(pk=persona.tenant.pk).exists():
        persona = personas[slug] = make_persona(slug)
    return persona


@pytest.fixture
def alpha(personas: dict[str, Persona], db: None) -> Persona:
    return _current(personas, "alpha")


@pytest.fixture
def bravo(personas: dict[str, Persona], db: None) -> Persona:
    return _current(personas, "bravo")


@pytest.fixture
def committed_personas(
    personas: dict[str, Persona], transactional_db: None
) -> Iterator[dict[str, Persona]]:
    """For tests whose work must be visible to other connections (LISTEN/NOTIFY, threads,
    other processes): nothing is rolled back, so such tests clean up what they make."""
    current = {slug: _current(personas, slug) for slug in personas}
    yield current
    for persona in current.values():
        with schema_context(persona.schema):
            wipe_agent_data()


def wipe_agent_data() -> None:
    from agents.models import (
        Agent,
        AgentVersion,
        Execution,
        ExecutionEvent,
        ModelPrice,
        ProviderCredential,
    )
    from workflow_bridge.models import Resource, Workflow

    # Workflows first: their resources and agent bindings hold on to agents.
    Resource.objects.all().delete()
    Workflow.objects.all().delete()
    for model in (ExecutionEvent, Execution, AgentVersion, Agent, ModelPrice, ProviderCredential):
        model.objects.all().delete()


class ApiClient:
    """Django's test client with a bearer credential, JSON bodies and a Host."""

    def __init__(self, key: str | None = None, host: str = "localhost") -> None:
        self.client = Client()
        self.key = key
        self.host = host

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = {"HTTP_HOST": self.host}
        if self.key:
            headers["HTTP_AUTHORIZATION"] = f"Bearer {self.key}"
        headers.update({f"HTTP_{k.upper().replace('-', '_')}": v for k, v in extra.items()})
        return headers

    def get(self, path: str, headers: dict[str, str] | None = None, **params: object):
        return self.client.get(path, params, **self._headers(headers or {}))

    def post(self, path: str, body: object = None, headers: dict[str, str] | None = None):
        return self.client.post(
            path,
            body if body is not None else {},
            content_type="application/json",
            **self._headers(headers or {}),
        )

    def delete(self, path: str, headers: dict[str, str] | None = None):
        return self.client.delete(path, **self._headers(headers or {}))


@pytest.fixture
def api() -> type[ApiClient]:
    return ApiClient


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LiveServer:
    url: str
    port: int


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log_path: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(
                f"{what} did not start: {log_path.read_text(errors='replace')[-2000:]}"
            )
        time.sleep(0.2)


# The ASGI servers the platform runs under, as command lines serving config.asgi on a port.
SERVER_COMMANDS = {
    "daphne": [
        "-m",
        "daphne",
        "-v",
        "0",
        "-b",
        "127.0.0.1",
        "-p",
        "{port}",
        "config.asgi:application",
    ],
    # uvicorn sends lifespan events (daphne does not): both must serve everything.
    "uvicorn": [
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--lifespan",
        "on",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--ws",
        "websockets-sansio",
        "config.asgi:application",
    ],
    # As platform/Procfile's alternative line but for the address and the workers: granian's
    # "asgi" interface sends lifespan events ("asginl" would not), and its supervisor passes
    # SIGTERM on to the worker.
    "granian": [
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--loop",
        "uvloop",
        "--workers",
        "{workers}",
        "--ws",
        "--backpressure",
        "20000",
        "--log-level",
        "warning",
        "config.asgi:application",
    ],
}
# The server live tests run the platform under: daphne, as deployed (platform/Procfile), unless
# LIVE_SERVER names granian (the Procfile's alternative) or uvicorn.
LIVE_SERVER = os.environ.get("LIVE_SERVER", "daphne")


def server_command(server: str, port: int) -> list[str]:
    """The command line of ``server`` (``granian:N``: N worker processes) on ``port``."""
    name, _, workers = server.partition(":")
    return [
        sys.executable,
        *(arg.format(port=port, workers=workers or 1) for arg in SERVER_COMMANDS[name]),
    ]


def spawn_server(
    env: dict[str, str], log: IO[bytes], log_path: Path, server: str = LIVE_SERVER
) -> tuple[subprocess.Popen[bytes], str]:
    """``server`` (a name in :data:`SERVER_COMMANDS`; ``granian:N`` for N worker processes)
    serving ``config.asgi`` on a free local port with ``env``, its output into ``log``; returns
    (process, base URL) once ``/healthz`` answers (RuntimeError otherwise)."""
    port = _free_port()
    proc = subprocess.Popen(
        server_command(server, port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(proc, url, log_path, server)
    return proc, url


def live_env(**env_overrides: str) -> dict[str, str]:
    """The environment of a live server process on the test database."""
    from django.db import connection

    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.test_settings",
            "PROVIDER_ALLOWED_PRIVATE": "127.0.0.1",  # the fake LLM server listens there
            # Revoked keys end their WebSockets within a second (tests wait on that).
            "WS_CREDENTIAL_CHECK_SECONDS": "0.5",
            "DATABASE_URL": (
                f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or ''}:{db['PORT'] or ''}/{db['NAME']}"
                if db["HOST"] and not db["HOST"].startswith("/")
                else f"postgres://{db['USER']}@/{db['NAME']}?host={db['HOST']}"
            ),
        }
    )
    env.update(env_overrides)
    return env


@contextlib.contextmanager
def live_server(server: str = LIVE_SERVER, **env_overrides: str) -> Iterator[LiveServer]:
    """The real ASGI app under ``server`` (a name in :data:`SERVER_COMMANDS`), in another process, on the test
    database. Stopped with SIGTERM; one that does not exit within 10 s fails the test."""
    # The server's log goes to a file: a pipe nobody reads fills up (64 KiB) and then blocks
    # the server on its next log line.
    log = tempfile.NamedTemporaryFile(prefix="live-server-", suffix=".log", delete=False)
    proc, url = spawn_server(live_env(**env_overrides), log, Path(log.name), server)
    port = int(url.rsplit(":", 1)[1])
    hung = False
    try:
        yield LiveServer(url, port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            hung = True
            proc.kill()
        log.close()
        if os.environ.get("KEEP_LIVE_LOG"):
            print(f"live server log: {log.name}")
        else:
            os.unlink(log.name)
    if hung:
        raise AssertionError(f"{server} did not exit within 10 s of SIGTERM")


@pytest.fixture(scope="session")
def live_server_url(personas: dict[str, Persona]) -> Iterator[LiveServer]:
    """The real ASGI app under ``LIVE_SERVER``, shared by the session's live tests."""
    with live_server() as server:
        yield server


# ---- the fake LLM server (one per session; each test scripts it under its own API key) ----


class FakeLLM:
    """Test-side handle on the fake server's control API."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.url = server.url
        self._http = httpx.Client(base_url=server.url, timeout=5)

    def base_url(self, kind: str) -> str:
        # OpenAI-style base URLs carry the version prefix; the others do not.
        return f"{self.url}/v1" if kind == "openai" else self.url

    def script(self, key: str, *steps: dict[str, Any]) -> None:
        response = self._http.post("/_control/scripts", json={"key": key, "steps": list(steps)})
        response.raise_for_status()

    def requests(self, key: str) -> list[dict[str, Any]]:
        response = self._http.get("/_control/requests", params={"key": key})
        response.raise_for_status()
        return response.json()["requests"]

    def wait_for(
        self, key: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 2.0
    ) -> float:
        """Seconds until the last logged request for ``key`` satisfies ``predicate``."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            logged = self.requests(key)
            if logged and predicate(logged[-1]):
                return time.monotonic() - start
            time.sleep(0.02)
        raise AssertionError(f"condition not met within {timeout}s: {self.requests(key)}")

    def close(self) -> None:
        self._http.close()


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLM]:
    server = start_in_thread()
    handle = FakeLLM(server)
    yield handle
    handle.close()
    server.stop()
