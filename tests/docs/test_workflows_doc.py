"""docs/agents/workflows.md, executed: its shell blocks run in order, in one bash, against a
live server and a real worker on the test database (its files written where it expects them).
If the page and the platform drift apart, this fails."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.docs.pages import blocks, run_page

DOC = ROOT / "docs/agents/workflows.md"

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_workflow_walkthrough_runs_as_written(
    live_server_url: Any, spawn_worker: Any, tmp_path: Path
) -> None:
    if not (shutil.which("curl") and shutil.which("jq")):
        pytest.skip("the walkthrough uses curl and jq, and this machine lacks one of them")
    scripts, files = blocks(DOC.read_text())
    assert len(scripts) >= 5 and "review.yaml" in files
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    spawn_worker()
    done = run_page(
        scripts,
        tmp_path,
        timeout=180,
        API=live_server_url.url,
        TENANT=f"doc-{uuid.uuid4().hex[:8]}",
    )
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
