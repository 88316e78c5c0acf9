"""The server comparison's names (bench/m_servers.py) and the one production command line that
the benchmark, the live tests and platform/ must agree on."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # bench/ is scripts with flat imports, not a package

import m_servers  # noqa: E402

from tests.conftest import SERVER_COMMANDS  # noqa: E402


def test_servers_may_name_their_worker_processes() -> None:
    assert m_servers.parse_servers("daphne, granian:2,uvicorn:3") == [
        "daphne",
        "granian:2",
        "uvicorn:3",
    ]
    assert m_servers.split_name("granian:2") == ("granian", 2)
    assert m_servers.split_name("daphne") == ("daphne", 1)
    argv = m_servers.server_argv("granian:2", 8123)
    assert argv[argv.index("--workers") + 1] == "2"


@pytest.mark.parametrize(
    "text", ["", "daphne:2", "granian:0", "granian:x", "hypercorn", "granian,granian"]
)
def test_bad_server_lists_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        m_servers.parse_servers(text)


def _flags(argv: list[str]) -> list[str]:
    """A command line without its program, address, port, worker count and app."""
    skip = {"--host", "--port", "--workers"}
    kept: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in skip:
            next(args)
        elif arg not in ("granian", "-m", "config.asgi:application", "--no-access-log"):
            if not arg.endswith("/granian"):
                kept.append(arg)
    return kept


def _procfile_web(prefix: str) -> list[str]:
    for line in (ROOT / "platform" / "Procfile").read_text().splitlines():
        if line.startswith(prefix):
            return shlex.split(line.removeprefix(prefix))
    raise AssertionError(f"platform/Procfile has no {prefix!r} line")


def test_live_tests_and_benchmark_run_the_servers_as_the_procfile_does() -> None:
    assert _procfile_web("web:")[:3] == ["daphne", "-v", "0"]
    assert SERVER_COMMANDS["daphne"][:4] == ["-m", "daphne", "-v", "0"]
    deployed = _procfile_web("#   web:")  # the alternative line
    assert deployed[0] == "granian"
    # --respawn-failed-workers is the supervisor's business, not a test's or a measurement's.
    production = [flag for flag in _flags(deployed) if flag != "--respawn-failed-workers"]
    assert _flags(SERVER_COMMANDS["granian"]) == production
    assert _flags(m_servers.server_argv("granian", 8123)) == production
