"""Who may use /mcp: bearer credentials of the platform, 401 with the metadata's address, 403
for a role that may not run, hosts and origins, and one tenant never seeing another's tools."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from django_tenants.utils import schema_context
from mcp.shared.exceptions import MCPError

from agents.models import Execution
from tenants.audit.models import AuditLog
from tests.api.conftest import auth
from tests.mcp.conftest import INITIALIZE, mcp_client

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _post(url: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{url}/mcp", content=json.dumps(body), headers={**ACCEPT, **(headers or {})}, timeout=10
    )


def test_no_or_bad_credential_is_401_naming_the_resource_metadata(live_server_url):
    url = live_server_url.url
    for headers in ({}, {"Authorization": "Bearer cba_not-a-key"}, {"Authorization": "Basic eDp5"}):
        response = _post(url, INITIALIZE, headers)
        assert response.status_code == 401, (headers, response.text)
        challenge = response.headers["WWW-Authenticate"]
        assert challenge == (
            f'Bearer resource_metadata="{url}/.well-known/oauth-protected-resource/mcp"'
        )
        assert response.json()["error"]["code"] == "not_authenticated"
        assert response.headers["X-Request-ID"]
    metadata = httpx.get(f"{url}/.well-known/oauth-protected-resource/mcp", timeout=10)
    assert metadata.status_code == 200
    assert metadata.json()["resource"] == f"{url}/mcp"
    assert metadata.json()["authorization_servers"] == [url]
    assert metadata.json()["bearer_methods_supported"] == ["header"]
    root = httpx.get(f"{url}/.well-known/oauth-protected-resource", timeout=10)
    assert root.json() == metadata.json()
    assert httpx.post(f"{url}/.well-known/oauth-protected-resource", timeout=10).status_code == 405


def test_a_readonly_key_lists_and_reads_but_may_not_run(
    live_server_url, live_agent, fake_llm, mode
):
    persona = live_agent.persona

    async def main() -> Any:
        async with mcp_client(live_server_url.url, persona.readonly_key, mode=mode) as client:
            tools = await client.list_tools()
            resources = await client.list_resources()
            return tools, resources

    tools, resources = asyncio.run(main())
    assert live_agent.agent.slug in [tool.name for tool in tools.tools]
    assert resources.resources == []
    # The call itself, as any client sends it: 403 with a JSON-RPC error, nothing run.
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": live_agent.agent.slug, "arguments": {"message": "x"}},
    }
    response = _post(live_server_url.url, call, auth(persona.readonly_key))
    assert response.status_code == 403, response.text
    assert response.json()["id"] == 7 and response.json()["error"]["code"] == -32003
    assert fake_llm.requests(live_agent.key) == []
    with schema_context(persona.schema):
        assert not Execution.objects.exists()
        denial = AuditLog.objects.filter(action="permission.denied").latest("id")
    assert denial.details["permission"] == "executions.run"
    assert denial.details["tool"] == live_agent.agent.slug


def test_another_tenant_sees_none_of_the_tools_and_cannot_call_them(
    live_server_url, live_agent, committed_personas, fake_llm, mode
):
    bravo = committed_personas["bravo"]

    async def main() -> Any:
        async with mcp_client(live_server_url.url, bravo.user_key, mode=mode) as client:
            tools = await client.list_tools()
            called = await client.call_tool(
                "execute_agent", {"agent_id": live_agent.agent.id, "input_data": {"message": "x"}}
            )
            agents = await client.call_tool("list_agents", {})
            # By name: an unknown tool.
            with pytest.raises(MCPError) as unknown:
                await client.call_tool(live_agent.agent.slug, {"message": "x"})
            return tools, called, agents, unknown.value

    tools, called, agents, unknown = asyncio.run(main())
    assert live_agent.agent.slug not in [tool.name for tool in tools.tools]
    assert called.is_error is True and "not found" in called.content[0].text.lower()
    assert agents.structured_content == {"agents": []}
    assert fake_llm.requests(live_agent.key) == []
    assert unknown.code == -32602


def test_host_origin_and_tenant_agreement(live_server_url, live_agent, committed_personas):
    url = live_server_url.url
    alpha, bravo = live_agent.persona, committed_personas["bravo"]
    # Bravo's key on alpha's host: refused, as on REST.
    response = _post(url, INITIALIZE, {**auth(bravo.user_key), "Host": alpha.host})
    assert response.status_code == 403 and response.json()["error"]["code"] == "tenant_mismatch"
    # Alpha's key on alpha's host, and X-Tenant-ID naming its own tenant: served.
    response = _post(
        url, INITIALIZE, {**auth(alpha.user_key), "Host": alpha.host, "X-Tenant-ID": alpha.slug}
    )
    assert response.status_code == 200, response.text
    response = _post(url, INITIALIZE, {**auth(alpha.user_key), "X-Tenant-ID": bravo.slug})
    assert response.status_code == 403
    assert (
        _post(url, INITIALIZE, {**auth(alpha.user_key), "Host": "evil.example"}).status_code == 400
    )
    assert (
        _post(url, INITIALIZE, {**auth(alpha.user_key), "Host": "nobody.localhost"}).status_code
        == 404
    )
    foreign = _post(url, INITIALIZE, {**auth(alpha.user_key), "Origin": "http://evil.example"})
    assert foreign.status_code == 403 and foreign.json()["error"]["code"] == "origin_not_allowed"


def test_oversized_body_is_413(live_server_url, live_agent, settings):
    body = {**INITIALIZE, "params": {**INITIALIZE["params"], "pad": "x" * (4 * 1_048_576 + 10)}}
    response = _post(live_server_url.url, body, auth(live_agent.persona.user_key))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
