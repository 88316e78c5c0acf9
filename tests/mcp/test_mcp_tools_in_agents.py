"""Tools of remote MCP servers inside agents: operators register a server over REST, an agent's
tool names one of its allowed tools, and the engine's tool loop calls it through the SDK's
client while the fake LLM asks for it. A small MCP server runs in the test (uvicorn, a thread)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from django_tenants.utils import schema_context
from mcp.server.mcpserver import MCPServer

from agents.models import ExecutionEvent, McpServer
from tenants.audit.models import AuditLog
from tests.api.conftest import patch


@dataclass
class RemoteServer:
    url: str
    # The Authorization header of each request the server got.
    authorizations: list[str | None] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def remote_mcp_server() -> Iterator[RemoteServer]:
    remote = MCPServer("team")

    @remote.tool()
    async def lookup(who: str) -> str:
        """Who is on call."""
        return f"{who} is on call until 18:00"

    @remote.tool()
    async def slow(who: str) -> str:
        """Never answers: it waits on an event nobody sets, until the caller gives up."""
        await asyncio.Event().wait()
        return "too late"

    app = remote.streamable_http_app(stateless_http=True)
    port = _free_port()
    server = RemoteServer(f"http://127.0.0.1:{port}/mcp")

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            value = headers.get(b"authorization")
            server.authorizations.append(value.decode() if value else None)
        await app(scope, receive, send)

    config = uvicorn.Config(recording, host="127.0.0.1", port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert time.monotonic() < deadline, "the remote MCP server did not start"
        time.sleep(0.05)
    try:
        yield server
    finally:
        running.should_exit = True
        thread.join(10)


@pytest.fixture
def remote() -> Iterator[RemoteServer]:
    with remote_mcp_server() as server:
        yield server


def _register(api: Any, persona: Any, remote: RemoteServer, **extra: Any) -> Any:
    body = {
        "name": "team",
        "url": remote.url,
        "auth_header": "Authorization: Bearer remote-secret",
        "allowed_tools": ["lookup", "slow"],
        **extra,
    }
    return api(persona.admin_key).post("/mcp-servers", body)


TOOL = {
    "name": "lookup",
    "description": "Who is on call",
    "kind": "mcp",
    "config": {"server": "team", "tool": "lookup"},
    "parameters": {
        "type": "object",
        "properties": {"who": {"type": "string"}},
        "required": ["who"],
    },
}


def test_an_agent_calls_a_tool_of_a_registered_mcp_server(api, llm_agent, fake_llm, remote, bravo):
    persona = llm_agent.persona
    registered = _register(api, persona, remote)
    assert registered.status_code == 201, registered.json()
    assert registered.json()["has_auth_header"] is True
    assert "remote-secret" not in registered.content.decode()
    listed = api(persona.admin_key).get("/mcp-servers")
    assert [s["name"] for s in listed.json()["mcp_servers"]] == ["team"]
    assert "remote-secret" not in listed.content.decode()
    # Another tenant does not see it; a user key may not manage servers.
    assert api(bravo.admin_key).get("/mcp-servers/team").status_code == 404
    assert api(persona.user_key).get("/mcp-servers").status_code == 403

    changed = patch(api(persona.admin_key), f"/agents/{llm_agent.agent.id}", {"tools": [TOOL]})
    assert changed.status_code == 200, changed.json()
    fake_llm.script(
        llm_agent.key,
        {"tool_calls": [{"name": "lookup", "arguments": {"who": "ann"}}]},
        {"reply": "Ann is on call."},
    )
    response = api(persona.user_key).post(
        f"/agents/{llm_agent.agent.id}/execute", {"input": {"message": "Who is on call?"}}
    )
    assert response.status_code == 200, response.json()
    assert response.json()["output"] == "Ann is on call."
    second = fake_llm.requests(llm_agent.key)[1]["json"]["messages"]
    assert any("ann is on call until 18:00" in str(m.get("content")) for m in second)
    with schema_context(persona.schema):
        events = list(
            ExecutionEvent.objects.filter(execution_id=response.json()["execution_id"]).values_list(
                "type", "data"
            )
        )
    kinds = [kind for kind, _ in events]
    assert "tool_call" in kinds and "tool_result" in kinds
    result = next(data for kind, data in events if kind == "tool_result")
    assert result.get("is_error") in (False, None)
    # The remote server got the server's own header, never the caller's credential.
    assert remote.authorizations and set(remote.authorizations) == {"Bearer remote-secret"}
    with schema_context(persona.schema):
        assert AuditLog.objects.filter(action="mcp_server.create").exists()


def test_a_slow_remote_tool_times_out_and_the_run_goes_on(api, llm_agent, fake_llm, remote):
    persona = llm_agent.persona
    assert _register(api, persona, remote, timeout_seconds=1).status_code == 201
    slow = {**TOOL, "name": "slow", "config": {"server": "team", "tool": "slow"}}
    assert (
        patch(
            api(persona.admin_key), f"/agents/{llm_agent.agent.id}", {"tools": [slow]}
        ).status_code
        == 200
    )
    fake_llm.script(
        llm_agent.key,
        {"tool_calls": [{"name": "slow", "arguments": {"who": "ann"}}]},
        {"reply": "The directory is slow today."},
    )
    response = api(persona.user_key).post(
        f"/agents/{llm_agent.agent.id}/execute", {"input": {"message": "Who is on call?"}}
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "completed"
    second = fake_llm.requests(llm_agent.key)[1]["json"]["messages"]
    assert any("did not answer within 1 s" in str(m.get("content")) for m in second)


def test_mcp_tools_and_servers_are_validated(api, llm_agent, remote):
    persona = llm_agent.persona
    admin = api(persona.admin_key)
    for body, wrong in [
        ({"name": "x", "url": "http://169.254.169.254/mcp"}, "url"),
        ({"name": "x", "url": "file:///etc/passwd"}, "url"),
        ({"name": "Bad Name", "url": remote.url}, "name"),
        ({"name": "x", "url": remote.url, "auth_header": "no colon"}, "auth_header"),
        ({"name": "x", "url": remote.url, "auth_header": "A: b\r\nX-Injected: 1"}, "auth_header"),
        ({"name": "x", "url": remote.url, "timeout_seconds": 0}, "timeout_seconds"),
        ({"name": "x", "url": remote.url, "allowed_tools": ["a b"]}, "allowed_tools"),
        ({"name": "x", "url": remote.url, "token": "y"}, "token"),
    ]:
        response = admin.post("/mcp-servers", body)
        assert response.status_code == 400, (body, response.json())
        assert response.json()["error"]["message"].startswith(f"{wrong}:"), response.json()
    with schema_context(persona.schema):
        assert not McpServer.objects.exists()
    assert _register(api, persona, remote).status_code == 201
    assert _register(api, persona, remote).status_code == 409  # the name is taken
    for tool, wrong in [
        ({**TOOL, "config": {"server": "nope", "tool": "lookup"}}, "tools[0].config.server"),
        ({**TOOL, "config": {"server": "team", "tool": "delete_all"}}, "tools[0].config.tool"),
        (
            {**TOOL, "config": {"server": "team", "tool": "lookup", "url": "x"}},
            "tools[0].config.url",
        ),
    ]:
        response = patch(admin, f"/agents/{llm_agent.agent.id}", {"tools": [tool]})
        assert response.status_code == 400, response.json()
        assert response.json()["error"]["message"].startswith(f"{wrong}:"), response.json()
    assert patch(admin, f"/agents/{llm_agent.agent.id}", {"tools": [TOOL]}).status_code == 200
    # In use: not removed, not renamed; the header can be dropped.
    assert admin.delete("/mcp-servers/team").status_code == 409
    assert patch(admin, "/mcp-servers/team", {"name": "other"}).status_code == 409
    dropped = patch(admin, "/mcp-servers/team", {"auth_header": ""})
    assert dropped.status_code == 200 and dropped.json()["has_auth_header"] is False
