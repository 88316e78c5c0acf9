"""docs/agents/workflows.md, executed: its shell blocks run in order, in one bash, against a
live daphne and a real worker on the test database (its files written where it expects them).
If the page and the platform drift apart, this fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.worker.conftest import database_url

DOC = ROOT / "docs/agents/workflows.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.M | re.S)

pytestmark = pytest.mark.django_db(transaction=True)


def blocks(text: str) -> tuple[list[str], dict[str, str]]:
    """The page's shell blocks in order, and its files (```yaml file=NAME)."""
    scripts: list[str] = []
    files: dict[str, str] = {}
    for language, info, body in FENCE.findall(text):
        named = re.search(r"file=(\S+)", info)
        if named:
            files[named.group(1)] = body
        elif language == "sh":
            scripts.append(body)
    return scripts, files


def test_the_workflow_walkthrough_runs_as_written(
    live_server_url: Any, spawn_worker: Any, tmp_path: Path
) -> None:
    if not (shutil.which("curl") and shutil.which("jq")):
        pytest.skip("the walkthrough uses curl and jq, and this machine lacks one of them")
    scripts, files = blocks(DOC.read_text())
    assert len(scripts) >= 5 and "review.yaml" in files
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    # The page runs `$PY manage.py ...` from the checkout; here it runs from a scratch folder.
    (tmp_path / "manage.py").write_text(
        f"import runpy, sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        f"runpy.run_path({str(ROOT / 'manage.py')!r}, run_name='__main__')\n"
    )
    spawn_worker()
    env = {
        **os.environ,
        "API": live_server_url.url,
        "TENANT": f"doc-{uuid.uuid4().hex[:8]}",
        "PY": sys.executable,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": database_url(),
    }
    script = "set -euo pipefail\n" + "\n".join(scripts)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = done.stdout
    assert "summariser v1" in out and "checker v1" in out
    assert '{"slug":"review","version":1,"state_agents":2}' in out
    assert '{"bounded":true,"deadlock_count":0,"dead_transitions":[]}' in out
    assert '{"activity":"submit","allowed":true}' in out
    final = next(line for line in out.splitlines() if line.startswith('{"state":'))
    assert final.startswith('{"state":"done"') and '"owner":"ann"' in final
    assert '"summary":"echo:' in final and '"verdict":"echo:' in final
    history = [line for line in out.splitlines() if re.match(r"^\d+ \w+", line)]
    assert [line.split()[1] for line in history] == [
        "created",
        "activity",
        "agent_triggered",
        "agent_result",
        "activity",
        "agent_triggered",
        "agent_result",
        "activity",
    ]
    assert out.count("completed echo:") == 2
