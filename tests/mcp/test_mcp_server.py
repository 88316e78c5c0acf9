"""The MCP server end to end: the SDK's own client over HTTP against the live server in another process,
in both protocol eras (2025-11-25's initialize handshake and stateless 2026-07-28)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from django_tenants.utils import schema_context
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged
from mcp_types import ResourceUpdatedNotification, ToolListChangedNotification

from agents.models import Agent, Execution
from tenants.audit.models import AuditLog
from tests.agents.conftest import make_agent, make_credential
from tests.api.conftest import auth, llm_agent_for
from tests.mcp.conftest import INITIALIZE, mcp_client
from tests.workflow_bridge.test_cascade import review_flow
from workflow_bridge.services import workflow_save


def _wait_status(schema: str, execution_id: str, wanted: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        with schema_context(schema):
            status = Execution.objects.get(pk=execution_id).status
        if status == wanted:
            return
        time.sleep(0.05)
    raise AssertionError(f"{execution_id} stayed {status}, wanted {wanted}")


def _only_execution(schema: str) -> Execution:
    with schema_context(schema):
        (execution,) = Execution.objects.all()
        return execution


def test_tools_list_and_an_agent_call_streams_progress(live_server_url, live_agent, fake_llm, mode):
    fake_llm.script(live_agent.key, {"reply": "one two three", "chunks": 3, "chunk_delay": 0.05})
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    async def main() -> Any:
        async with mcp_client(
            live_server_url.url, live_agent.persona.user_key, mode=mode
        ) as client:
            listed = await client.list_tools()
            result = await client.call_tool(
                live_agent.agent.slug, {"message": "count"}, progress_callback=on_progress
            )
            return listed, result

    listed, result = asyncio.run(main())
    names = [tool.name for tool in listed.tools]
    assert names[:5] == [
        "list_agents",
        "execute_agent",
        "create_resource",
        "fire_activity",
        "get_resource",
    ]
    tool = next(tool for tool in listed.tools if tool.name == live_agent.agent.slug)
    assert tool.input_schema["type"] == "object" and "message" in tool.input_schema["properties"]
    assert tool.annotations is not None and tool.annotations.read_only_hint is False

    assert result.is_error is False
    assert result.content[0].text == "one two three"
    execution_id = result.structured_content["execution_id"]
    assert result.content[1].uri == f"execution://{execution_id}"
    assert [message for _, message in progress] == ["one ", "two ", "three"]
    assert [value for value, _ in progress] == [1, 2, 3]
    # An ordinary execution: in the REST API, with the tool in its context.
    with httpx.Client(base_url=live_server_url.url, timeout=10) as rest:
        stored = rest.get(f"/executions/{execution_id}", headers=auth(live_agent.persona.user_key))
    assert stored.status_code == 200, stored.text
    assert stored.json()["status"] == "completed"
    assert stored.json()["context"]["mcp"]["tool"] == live_agent.agent.slug
    sent = fake_llm.requests(live_agent.key)[-1]["json"]
    assert sent["messages"][-1]["content"] == "count"


def test_schema_arguments_map_onto_the_agent_input_and_output_schema_is_structured(
    live_server_url, committed_personas, fake_llm, settings, mode
):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    made = llm_agent_for(
        committed_personas["alpha"],
        fake_llm,
        input_schema={
            "type": "object",
            "properties": {"topic": {"type": "string"}, "words": {"type": "integer"}},
            "required": ["topic"],
        },
        user_template="Write {words} words about {topic}",
        output_schema={
            "type": "object",
            "properties": {"title": {"type": "string"}},
            "required": ["title"],
        },
    )
    fake_llm.script(made.key, {"json": {"title": "Tides"}})

    async def main() -> Any:
        async with mcp_client(live_server_url.url, made.persona.user_key, mode=mode) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            result = await client.call_tool(made.agent.slug, {"topic": "the sea", "words": 5})
            refused = await client.call_tool(made.agent.slug, {"words": 5})
            return tools[made.agent.slug], result, refused

    tool, result, refused = asyncio.run(main())
    assert tool.input_schema["required"] == ["topic"]
    assert tool.output_schema["properties"] == {"title": {"type": "string"}}
    assert result.is_error is False, result.content
    assert result.structured_content == {"title": "Tides"}
    assert fake_llm.requests(made.key)[0]["json"]["messages"][-1]["content"] == (
        "Write 5 words about the sea"
    )
    # Input against the agent's schema: a tool error the model can correct, nothing stored.
    assert refused.is_error is True
    assert "topic" in refused.content[0].text
    assert len(fake_llm.requests(made.key)) == 1
    with schema_context(made.persona.schema):
        assert Execution.objects.count() == 1


def test_agent_failure_is_an_error_result(live_server_url, live_agent, fake_llm, mode):
    fake_llm.script(live_agent.key, {"status": 400, "message": "the model refused"})

    async def main() -> Any:
        async with mcp_client(
            live_server_url.url, live_agent.persona.user_key, mode=mode
        ) as client:
            return await client.call_tool(live_agent.agent.slug, {"message": "x"})

    result = asyncio.run(main())
    assert result.is_error is True
    assert "The agent failed" in result.content[0].text
    assert result.structured_content["status"] == "failed"
    assert _only_execution(live_agent.persona.schema).status == "failed"


def test_unknown_tool_is_invalid_params(live_server_url, live_agent, mode):
    async def main() -> Any:
        async with mcp_client(
            live_server_url.url, live_agent.persona.user_key, mode=mode
        ) as client:
            with pytest.raises(MCPError) as raised:
                await client.call_tool("no-such-agent", {"message": "x"})
            return raised.value

    error = asyncio.run(main())
    assert error.code == -32602
    assert "Unknown tool" in error.message


def test_execute_agent_passes_model_and_sampling_parameters(
    live_server_url, live_agent, fake_llm, mode
):
    fake_llm.script(live_agent.key, {"reply": "done"})

    async def main() -> Any:
        async with mcp_client(
            live_server_url.url, live_agent.persona.user_key, mode=mode
        ) as client:
            ran = await client.call_tool(
                "execute_agent",
                {
                    "agent_id": live_agent.agent.id,
                    "input_data": {"message": "go"},
                    "model_override": "gpt-other",
                    "temperature": 0.2,
                    "max_tokens": 77,
                },
            )
            listed = await client.call_tool("list_agents", {})
            return ran, listed

    ran, listed = asyncio.run(main())
    assert ran.is_error is False and ran.content[0].text == "done"
    sent = fake_llm.requests(live_agent.key)[-1]["json"]
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == ("gpt-other", 0.2, 77)
    assert ran.structured_content["status"] == "completed"
    assert _only_execution(live_agent.persona.schema).requested_model == "gpt-other"
    agents = listed.structured_content["agents"]
    assert [agent["slug"] for agent in agents] == [live_agent.agent.slug]


def test_cancelling_the_call_cancels_the_execution(live_server_url, live_agent, fake_llm, mode):
    fake_llm.script(
        live_agent.key,
        {"reply": "a b c d e f g h i j k l", "chunks": 12, "chunk_delay": 0.5},
    )

    async def main() -> None:
        first = asyncio.Event()

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            first.set()

        async with mcp_client(
            live_server_url.url, live_agent.persona.user_key, mode=mode
        ) as client:
            call = asyncio.create_task(
                client.call_tool(
                    live_agent.agent.slug, {"message": "slow"}, progress_callback=on_progress
                )
            )
            await asyncio.wait_for(first.wait(), 10)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            # Keep the connection a moment: the cancel notification goes out after this.
            await asyncio.sleep(0)

    asyncio.run(main())
    execution = _only_execution(live_agent.persona.schema)
    # 12 chunks 0.5 s apart would take 6 s; cancelled, it ends long before.
    _wait_status(live_agent.persona.schema, execution.id, "cancelled", timeout=4)
    with schema_context(live_agent.persona.schema):
        assert AuditLog.objects.filter(action="execution.cancel", target_id=execution.id).exists()


def test_resources_list_read_events_and_not_found(
    live_server_url, live_agent, fake_llm, bravo, mode
):
    fake_llm.script(live_agent.key, {"reply": "stored", "chunks": 2})

    async def main() -> Any:
        async with mcp_client(
            live_server_url.url, live_agent.persona.user_key, mode=mode
        ) as client:
            ran = await client.call_tool(live_agent.agent.slug, {"message": "x"})
            execution_id = ran.structured_content["execution_id"]
            listed = await client.list_resources()
            templates = await client.list_resource_templates()
            read = await client.read_resource(f"execution://{execution_id}")
            events = await client.read_resource(f"execution://{execution_id}/events?after=1")
            with pytest.raises(MCPError) as missing:
                await client.read_resource("execution://exec_0000")
        async with mcp_client(live_server_url.url, bravo.user_key, mode=mode) as other:
            with pytest.raises(MCPError) as foreign:
                await other.read_resource(f"execution://{execution_id}")
            foreign_list = await other.list_resources()
        return (
            execution_id,
            listed,
            templates,
            read,
            events,
            missing.value,
            foreign.value,
            foreign_list,
        )

    execution_id, listed, templates, read, events, missing, foreign, foreign_list = asyncio.run(
        main()
    )
    assert [str(r.uri) for r in listed.resources] == [f"execution://{execution_id}"]
    assert {t.uri_template for t in templates.resource_templates} == {
        "execution://{execution_id}",
        "execution://{execution_id}/events{?after}",
    }
    body = json.loads(read.contents[0].text)
    assert body["status"] == "completed" and body["output"] == "stored"
    assert body["usage"]["output_tokens"] > 0
    stored = json.loads(events.contents[0].text)
    assert stored["events"][0]["seq"] == 2 and stored["events"][-1]["type"] == "complete"
    assert stored["terminal"] is True
    assert missing.code == -32002
    # Another tenant's execution reads exactly like one that does not exist.
    assert foreign.code == -32002
    assert all(str(r.uri) != f"execution://{execution_id}" for r in foreign_list.resources)


def test_prompts(live_server_url, live_agent, mode):
    async def main() -> Any:
        async with mcp_client(
            live_server_url.url, live_agent.persona.user_key, mode=mode
        ) as client:
            listed = await client.list_prompts()
            config = await client.get_prompt(
                "agent_configuration", {"agent_id": live_agent.agent.slug}
            )
            template = await client.get_prompt(
                "workflow_template", {"description": "expense claims"}
            )
            with pytest.raises(MCPError) as unknown:
                await client.get_prompt("agent_configuration", {"agent_id": "nope"})
            return listed, config, template, unknown.value

    listed, config, template, unknown = asyncio.run(main())
    assert [p.name for p in listed.prompts] == ["agent_configuration", "workflow_template"]
    assert live_agent.agent.name in config.messages[0].content.text
    assert '"model"' in config.messages[0].content.text
    assert "expense claims" in template.messages[0].content.text
    assert "circuit-breaker/workflow@1" in template.messages[0].content.text
    assert unknown.code == -32602


def test_workflow_tools(live_server_url, committed_personas, mode):
    alpha = committed_personas["alpha"]
    with schema_context(alpha.schema):
        workflow = workflow_save(
            definition=review_flow("mcp-review"), actor="tests", schema_name=alpha.schema
        )

    async def main() -> Any:
        async with mcp_client(live_server_url.url, alpha.user_key, mode=mode) as client:
            created = await client.call_tool(
                "create_resource", {"workflow_id": workflow.slug, "data": {"document": "d"}}
            )
            resource_id = created.structured_content["id"]
            refused = await client.call_tool(
                "fire_activity", {"resource_id": resource_id, "activity_id": "checked"}
            )
            fired = await client.call_tool(
                "fire_activity", {"resource_id": resource_id, "activity_id": "submit"}
            )
            read = await client.call_tool("get_resource", {"resource_id": resource_id})
            return created, refused, fired, read

    created, refused, fired, read = asyncio.run(main())
    assert created.is_error is False and created.structured_content["state"] == "draft"
    assert refused.is_error is True and "cannot fire" in refused.content[0].text
    assert fired.structured_content["status"] == "fired"
    assert read.structured_content["state"] == "summarising"
    kinds = [entry["kind"] for entry in read.structured_content["history"]]
    assert sorted(kinds) == ["activity", "created"], kinds


def test_listen_notifies_status_changes_and_tool_list_changes(
    live_server_url, live_agent, fake_llm
):
    """2026-07-28 subscriptions/listen: an execution running (here started over REST) and the
    tenant's agents changing (an operator disabling one)."""
    fake_llm.script(live_agent.key, {"reply": "a b c d", "chunks": 4, "chunk_delay": 0.3})
    schema = live_agent.persona.schema

    def disable() -> None:
        with schema_context(schema):
            Agent.objects.filter(pk=live_agent.agent.pk).update(enabled=False)

    async def main() -> list[Any]:
        seen: list[Any] = []
        async with httpx.AsyncClient(base_url=live_server_url.url, timeout=20) as rest:
            async with rest.stream(
                "POST",
                f"/agents/{live_agent.agent.id}/execute/stream",
                headers=auth(live_agent.persona.user_key),
                json={"input": {"message": "go"}},
            ) as stream:
                execution_id = stream.headers["Location"].rsplit("/", 2)[-2]
                uri = f"execution://{execution_id}"
                async with mcp_client(
                    live_server_url.url, live_agent.persona.user_key, mode="2026-07-28"
                ) as client:
                    async with client.listen(
                        tools_list_changed=True, resource_subscriptions=[uri, "execution://nope"]
                    ) as subscription:
                        assert subscription.honored.resource_subscriptions == [uri]
                        async for event in subscription:
                            seen.append(event)
                            if isinstance(event, ResourceUpdated):
                                read = await client.read_resource(uri)
                                if json.loads(read.contents[0].text)["status"] == "completed":
                                    await asyncio.to_thread(disable)
                            if isinstance(event, ToolsListChanged):
                                tools = await client.list_tools(cache_mode="bypass")
                                seen.append([tool.name for tool in tools.tools])
                                break
                async for _ in stream.aiter_bytes():
                    pass
        return seen

    seen = asyncio.run(asyncio.wait_for(main(), 30))
    updates = [event for event in seen if isinstance(event, ResourceUpdated)]
    assert updates and all(event.uri.startswith("execution://exec_") for event in updates)
    assert isinstance(seen[-2], ToolsListChanged)
    assert live_agent.agent.slug not in seen[-1]


@pytest.mark.filterwarnings("ignore:resources/subscribe is removed")
def test_legacy_session_subscriptions_notify_status_and_tool_list_changes(
    live_server_url, live_agent, fake_llm
):
    """2025-11-25: the session id from initialize opens the notification stream (GET /mcp);
    resources/subscribe, then notifications/resources/updated as the run goes on, and
    notifications/tools/list_changed when an operator disables an agent."""
    fake_llm.script(live_agent.key, {"reply": "a b c d", "chunks": 4, "chunk_delay": 0.3})
    schema = live_agent.persona.schema

    def disable() -> None:
        with schema_context(schema):
            Agent.objects.filter(pk=live_agent.agent.pk).update(enabled=False)

    async def main() -> tuple[Any, list[Any]]:
        seen: list[Any] = []
        arrived = asyncio.Event()

        async def on_message(message: Any) -> None:
            if isinstance(message, ResourceUpdatedNotification | ToolListChangedNotification):
                seen.append(message)
                arrived.set()

        async with httpx.AsyncClient(base_url=live_server_url.url, timeout=20) as rest:
            async with rest.stream(
                "POST",
                f"/agents/{live_agent.agent.id}/execute/stream",
                headers=auth(live_agent.persona.user_key),
                json={"input": {"message": "go"}},
            ) as stream:
                execution_id = stream.headers["Location"].rsplit("/", 2)[-2]
                uri = f"execution://{execution_id}"
                async with mcp_client(
                    live_server_url.url,
                    live_agent.persona.user_key,
                    mode="legacy",
                    message_handler=on_message,
                ) as client:
                    capabilities = client.session.initialize_result.capabilities
                    await client.subscribe_resource(uri)
                    with pytest.raises(MCPError) as unknown:
                        await client.subscribe_resource("execution://exec_nope")
                    assert unknown.value.code == -32002
                    disabled = False
                    async with asyncio.timeout(20):
                        while not any(isinstance(m, ToolListChangedNotification) for m in seen):
                            await arrived.wait()
                            arrived.clear()
                            read = await client.read_resource(uri)
                            status = json.loads(read.contents[0].text)["status"]
                            if status == "completed" and not disabled:
                                disabled = True
                                await asyncio.to_thread(disable)
                async for _ in stream.aiter_bytes():
                    pass
        return capabilities, seen

    capabilities, seen = asyncio.run(main())
    assert capabilities.resources.subscribe is True and capabilities.tools.list_changed is True
    updates = [m for m in seen if isinstance(m, ResourceUpdatedNotification)]
    assert updates and all(str(m.params.uri).startswith("execution://exec_") for m in updates)
    assert isinstance(seen[-1], ToolListChangedNotification)


def test_a_session_id_is_bound_to_its_credential(live_server_url, live_agent, committed_personas):
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-11-25",
    }
    url = f"{live_server_url.url}/mcp"
    opened = httpx.post(
        url, json=INITIALIZE, headers={**headers, **auth(live_agent.persona.user_key)}
    )
    session = opened.headers["Mcp-Session-Id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    mine = httpx.post(
        url,
        json=listing,
        headers={**headers, **auth(live_agent.persona.user_key), "Mcp-Session-Id": session},
    )
    assert mine.status_code == 200, mine.text
    for key in (live_agent.persona.admin_key, committed_personas["bravo"].user_key):
        theirs = httpx.post(
            url, json=listing, headers={**headers, **auth(key), "Mcp-Session-Id": session}
        )
        assert theirs.status_code == 404, theirs.text
    forged = httpx.post(
        url,
        json=listing,
        headers={**headers, **auth(live_agent.persona.user_key), "Mcp-Session-Id": session + "x"},
    )
    assert forged.status_code == 404


def test_tools_and_resources_page_in_a_stable_order(live_server_url, committed_personas, mode):
    alpha = committed_personas["alpha"]
    with schema_context(alpha.schema):
        credential = make_credential(kind="echo")
        slugs = sorted(make_agent(credential, alpha.schema).slug for _ in range(60))

    async def main() -> Any:
        async with mcp_client(live_server_url.url, alpha.user_key, mode=mode) as client:
            pages = [await client.list_tools(cache_mode="bypass")]
            while pages[-1].next_cursor:
                pages.append(
                    await client.list_tools(cursor=pages[-1].next_cursor, cache_mode="bypass")
                )
            with pytest.raises(MCPError) as bad:
                await client.list_tools(cursor="not-a-cursor", cache_mode="bypass")
            return pages, bad.value

    pages, bad = asyncio.run(main())
    assert [len(page.tools) for page in pages] == [50, 15]
    names = [tool.name for page in pages for tool in page.tools]
    assert names[5:] == slugs  # after the five fixed tools, agents by slug
    assert bad.code == -32602


def test_a_tenant_jwt_is_a_bearer_credential_too(live_server_url, live_agent, fake_llm, mode):
    with httpx.Client(base_url=live_server_url.url, timeout=10) as rest:
        issued = rest.post("/auth/token", headers=auth(live_agent.persona.user_key), json={})
    assert issued.status_code in (200, 201), issued.text
    token = issued.json()["access_token"]
    fake_llm.script(live_agent.key, {"reply": "by token"})

    async def main() -> Any:
        async with mcp_client(live_server_url.url, token, mode=mode) as client:
            return await client.call_tool(live_agent.agent.slug, {"message": "x"})

    result = asyncio.run(main())
    assert result.is_error is False and result.content[0].text == "by token"
    assert _only_execution(live_agent.persona.schema).principal.startswith("token:")
