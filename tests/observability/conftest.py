"""Live processes whose output the observability tests read: the web server and workers with their
logs kept in files, and the helpers to parse those logs."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django_tenants.utils import schema_context

from tests.conftest import LIVE_SERVER, ROOT, Persona, live_env, server_command
from tests.worker.conftest import clean_queue, spawn_worker  # noqa: F401 (fixtures)


@dataclass(frozen=True)
class LoggedServer:
    url: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def logged_server(log: Path, **env: str) -> Iterator[LoggedServer]:
    """The live tests' server serving the platform as deployed (no plain-text access log of
    its own), stdout and stderr into ``log`` (kept for the test)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            server_command(LIVE_SERVER, port),
            cwd=ROOT,
            env=live_env(**env),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(
                f"{LIVE_SERVER} did not start: {log.read_text(errors='replace')[-2000:]}"
            )
        time.sleep(0.1)
    try:
        yield LoggedServer(url, port, log, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line as JSON (a line that is not JSON fails the test)."""
    lines = []
    for line in text.splitlines():
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                raise AssertionError(f"not a JSON log line: {line!r}") from None
    return lines


def wait_for_line(
    read: Callable[[], str], predicate: Callable[[dict[str, Any]], bool], timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        for line in json_lines(read()):
            if predicate(line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no such log line within {timeout}s:\n{read()[-3000:]}")
        time.sleep(0.05)


def set_log_content(persona: Persona, on: bool) -> None:
    from tenants.models import Tenant

    with schema_context("public"):
        tenant = Tenant.objects.get(pk=persona.tenant.pk)
        tenant.log_content = on
        tenant.save(update_fields=["log_content"])  # post_save NOTIFYs every process


@pytest.fixture
def log_content_off(committed_personas: dict[str, Persona]) -> Iterator[None]:
    yield
    for persona in committed_personas.values():
        set_log_content(persona, False)
