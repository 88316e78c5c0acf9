"""Real workers for the worker tests: ``python manage.py worker`` in a subprocess, on the test
database, with short heartbeat and sweep settings; the fake LLM server; committed personas.

Every subprocess started here is killed at teardown, whatever happened in the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from agents.models import Agent, Execution, ExecutionEvent
from tests.agents.conftest import make_agent, make_credential
from tests.conftest import ROOT, Persona
from tests.runs import store_queued

# Short enough for tests; production defaults are in config/settings.py.
FAST_WORKER_ENV = {
    "WORKER_HEARTBEAT_SECONDS": "0.5",
    "WORKER_STALLED_AFTER_SECONDS": "2",
    "WORKER_SWEEP_SECONDS": "1",
    "WORKER_POLLING_INTERVAL_SECONDS": "0.2",
    "WORKER_CANCEL_CHECK_SECONDS": "0.5",
    "WORKER_CONCURRENCY": "4",
    "TENANT_MAX_CONCURRENT_EXECUTIONS": "0",
    "TENANT_CAP_RETRY_SECONDS": "0.3",
}

# WORKER_TEST_TIMINGS=production: measure recovery with the default heartbeat, stalled
# threshold and sweep period (slow: about half a minute per lost worker).
PRODUCTION_TIMINGS = os.environ.get("WORKER_TEST_TIMINGS") == "production"
RECOVERY_BOUND_SECONDS = 35.0 if PRODUCTION_TIMINGS else 10.0


def database_url() -> str:
    db = connection.settings_dict
    if db["HOST"] and not db["HOST"].startswith("/"):
        return (
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or ''}/{db['NAME']}"
        )
    return f"postgres://{db['USER']}@/{db['NAME']}?host={db['HOST']}"


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """SIGTERM (it closes its connections), SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _last_worker_id() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM public.procrastinate_workers")
        return int(cursor.fetchone()[0])


def _workers_after(worker_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM public.procrastinate_workers WHERE id > %s", [worker_id]
        )
        return int(cursor.fetchone()[0])


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``manage.py worker`` processes; returns once both of a process's workers are
    registered (taking jobs)."""
    started: list[WorkerProcess] = []

    def spawn(**env_overrides: str) -> WorkerProcess:
        env = dict(os.environ)
        env.update(FAST_WORKER_ENV)
        if PRODUCTION_TIMINGS:
            for name in ("WORKER_HEARTBEAT_SECONDS", "WORKER_STALLED_AFTER_SECONDS"):
                env.pop(name)
            env["WORKER_SWEEP_SECONDS"] = "5"
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.test_settings",
                "DATABASE_URL": database_url(),
                "PROVIDER_ALLOWED_PRIVATE": "127.0.0.1",
                "LOG_LEVEL": "INFO",
            }
        )
        env.update(env_overrides)
        log = tmp_path / f"worker-{len(started)}.log"
        before = _last_worker_id()
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "worker"],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(proc, log)
        started.append(worker)
        deadline = time.monotonic() + 20
        while _workers_after(before) < 2:  # its executions and maintenance workers
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{worker.output()}")
            time.sleep(0.1)
        return worker

    try:
        yield spawn
    finally:
        for worker in started:
            worker.stop()


@pytest.fixture
def clean_queue(transactional_db: None) -> Iterator[None]:
    """An empty job queue before and after (jobs are public rows that outlive tests)."""

    def truncate() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE public.procrastinate_events, public.procrastinate_periodic_defers, "
                "public.procrastinate_jobs, public.procrastinate_workers CASCADE"
            )

    truncate()
    yield
    truncate()


@dataclass(frozen=True)
class Scripted:
    persona: Persona
    agent: Agent
    key: str


@pytest.fixture
def scripted_agent(
    committed_personas: dict[str, Persona], fake_llm: Any, settings: Any, clean_queue: None
) -> Callable[[str], Scripted]:
    """An agent of a persona that talks to the fake LLM under its own key."""
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]

    def make(slug: str) -> Scripted:
        persona = committed_personas[slug]
        key = f"sk-test-{uuid.uuid4().hex}"
        with schema_context(persona.schema):
            credential = make_credential(kind="openai", base_url=f"{fake_llm.url}/v1", api_key=key)
            agent = make_agent(credential, persona.schema)
        return Scripted(persona, agent, key)

    return make


def create_queued(scripted: Scripted, message: str = "go") -> str:
    return store_queued(scripted.persona.schema, scripted.agent, message=message).id


def execution_of(schema: str, execution_id: str) -> Execution:
    with schema_context(schema):
        return Execution.objects.get(pk=execution_id)


def events_of(schema: str, execution_id: str) -> list[ExecutionEvent]:
    with schema_context(schema):
        return list(ExecutionEvent.objects.filter(execution_id=execution_id).order_by("seq"))


def wait_for(predicate: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout}s")


def job_statuses(ids: list[int]) -> dict[int, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, status::text FROM public.procrastinate_jobs WHERE id = ANY(%s)", [ids]
        )
        return dict(cursor.fetchall())
