"""The embedded PostgreSQL (pgserver) that a machine with no database falls back to."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from config.database import _embedded
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pgserver") is None,
    reason="pgserver has wheels for CPython 3.9-3.12 on x86-64 only; this machine cannot use it",
)


def test_embedded_server_starts_and_serves_a_database(tmp_path):
    settings = _embedded(tmp_path / "pg", "embedded_probe")
    assert settings["HOST"].startswith("/") and settings["NAME"] == "embedded_probe"
    with psycopg.connect(host=settings["HOST"], user="postgres", dbname="embedded_probe") as conn:
        conn.execute("CREATE SCHEMA t_probe")  # schemas are what tenancy needs
        assert conn.execute("SHOW server_version").fetchone()[0].startswith("16")
    # A second resolution reuses the running server and the existing database.
    assert _embedded(tmp_path / "pg", "embedded_probe") == settings


def _run_user(data_dir, then: str) -> subprocess.CompletedProcess[str]:
    """A process that uses the embedded server, then ``then`` (Python code)."""
    code = (
        "import os, signal\n"
        "from pathlib import Path\n"
        "from config.database import _embedded\n"
        f"_embedded(Path({str(data_dir)!r}), 'embedded_probe')\n"
        f"{then}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _postmaster(data_dir) -> int | None:
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def test_the_last_process_to_leave_stops_the_server_quietly_even_after_a_killed_one(tmp_path):
    data_dir = tmp_path / "pg"
    try:
        # Killed: no exit hook runs, so it never leaves pgserver's list of users.
        killed = _run_user(data_dir, "os.kill(os.getpid(), signal.SIGKILL)")
        # (On failure: the end of its stderr, e.g. initdb's complaint, not a truncated repr.)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert _postmaster(data_dir) is not None
        left = _run_user(data_dir, "pass")
        assert left.returncode == 0, left.stderr
        deadline = time.monotonic() + 30
        while _postmaster(data_dir) is not None:
            assert time.monotonic() < deadline, "the embedded server was left running"
            time.sleep(0.1)
        # Nothing but our own log lines: no warnings, no traceback.
        noise = [line for line in left.stderr.splitlines() if " INFO " not in line]
        assert noise == [], left.stderr
    finally:
        pid = _postmaster(data_dir)
        if pid is not None:
            os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
