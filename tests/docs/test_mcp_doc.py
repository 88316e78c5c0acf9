"""docs/agents/mcp.md, executed: its shell blocks run in order against a live daphne on the
test database, its Python session runs as written, and its desktop client configuration is
read the way such a client reads it and used to connect."""

from __future__ import annotations

import asyncio
import json
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
from tests.docs.test_workflows_doc import blocks
from tests.mcp.conftest import mcp_client
from tests.worker.conftest import database_url

DOC = ROOT / "docs/agents/mcp.md"

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_mcp_page_runs_as_written(live_server_url: Any, tmp_path: Path) -> None:
    if not (shutil.which("curl") and shutil.which("jq")):
        pytest.skip("the page uses curl and jq, and this machine lacks one of them")
    scripts, files = blocks(DOC.read_text())
    assert len(scripts) == 2 and {"mcp.json", "session.py"} <= set(files)
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    (tmp_path / "manage.py").write_text(
        f"import runpy, sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        f"runpy.run_path({str(ROOT / 'manage.py')!r}, run_name='__main__')\n"
    )
    env = {
        **os.environ,
        "API": live_server_url.url,
        "TENANT": f"doc-{uuid.uuid4().hex[:8]}",
        "PY": sys.executable,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": database_url(),
    }
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + "\n".join(scripts)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = done.stdout.splitlines()
    assert '{"slug":"helper","version":1}' in out
    tools = next(line for line in out if line.startswith("tools: "))
    assert tools.split(": ", 1)[1].split(", ") == [
        "list_agents",
        "execute_agent",
        "create_resource",
        "fire_activity",
        "get_resource",
        "helper",
    ]
    assert "answer: echo: Who is on call?" in out
    assert any(line.startswith("chunk: ") for line in out)
    assert "status: completed" in out

    # The desktop configuration, as a client reads it: the URL, and headers with the key.
    key = json.loads((tmp_path / "tenant.json").read_text())["api_key"]
    (server,) = json.loads(files["mcp.json"])["mcpServers"].values()
    assert server["url"] == "http://localhost:8000/mcp"
    headers = {
        name: re.sub(r"\$\{CBA_API_KEY\}", key, value) for name, value in server["headers"].items()
    }
    base = server["url"].replace("http://localhost:8000", live_server_url.url).removesuffix("/mcp")

    async def connect() -> list[str]:
        async with mcp_client(base, None, mode="legacy", headers=headers) as client:
            return [tool.name for tool in (await client.list_tools()).tools]

    assert "helper" in asyncio.run(connect())
