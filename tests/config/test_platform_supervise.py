"""``platform/supervise.sh``, which keeps ``make run``'s worker up: a command that dies is
started again; INT or TERM stops it after the command has finished what it was doing."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.conftest import ROOT

SUPERVISE = ROOT / "platform" / "supervise.sh"

# Counts its starts; on TERM takes a moment to "drain", notes it, and exits.
CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    log = Path(sys.argv[1])
    with log.open("a") as f:
        f.write("start\\n")
    if sys.argv[2] == "die":
        sys.exit(1)
    if sys.argv[2] == "finish":
        sys.exit(0)
    def drain(*_):
        time.sleep(0.5)
        with log.open("a") as f:
            f.write("drained\\n")
        sys.exit(0)
    signal.signal(signal.SIGTERM, drain)
    while True:
        time.sleep(0.1)
    """
)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def _start(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[bytes], Path]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    log = tmp_path / "child.log"
    log.touch()
    proc = subprocess.Popen(
        ["sh", str(SUPERVISE), sys.executable, str(script), str(log), mode],
        stderr=subprocess.PIPE,
    )
    return proc, log


def test_a_command_that_dies_is_started_again(tmp_path):
    proc, log = _start(tmp_path, "die")
    try:
        _wait_for(lambda: log.read_text().count("start") >= 2, 10, "second start")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert b"starting it again" in proc.stderr.read()


def test_a_signal_stops_it_after_the_command_has_drained(tmp_path):
    proc, log = _start(tmp_path, "serve")
    _wait_for(lambda: "start" in log.read_text(), 10, "first start")
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert proc.wait(10) == 0
    # The supervisor left only after its command had finished draining, and did not restart it.
    assert log.read_text().split() == ["start", "drained"]


def test_a_command_that_finishes_is_not_started_again(tmp_path):
    # A worker exits 0 only when told to stop: Ctrl-C reaches it before this script hears.
    proc, log = _start(tmp_path, "finish")
    assert proc.wait(10) == 0
    assert log.read_text().split() == ["start"]
