"""docs/agents/mcp.md, executed: its shell blocks run in order against a live server on the
test database, its Python session runs as written, and its desktop client configuration is
read the way such a client reads it and used to connect."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.docs.pages import blocks, run_page
from tests.mcp.conftest import mcp_client

DOC = ROOT / "docs/agents/mcp.md"

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_mcp_page_runs_as_written(live_server_url: Any, tmp_path: Path) -> None:
    if not (shutil.which("curl") and shutil.which("jq")):
        pytest.skip("the page uses curl and jq, and this machine lacks one of them")
    scripts, files = blocks(DOC.read_text())
    assert len(scripts) == 2 and {"mcp.json", "session.py"} <= set(files)
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    done = run_page(
        scripts, tmp_path, API=live_server_url.url, TENANT=f"doc-{uuid.uuid4().hex[:8]}"
    )
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
