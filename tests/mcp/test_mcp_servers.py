"""/mcp under each ASGI server the platform runs on, and with several server processes behind
one URL. The server is stateless (no MCP session in any process's memory), so a 2025-11-25
session whose requests land on different processes keeps working, and a cancel sent to one
process stops the run executing in another."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from django_tenants.utils import schema_context
from mcp_types import ResourceUpdatedNotification

from agents.models import Execution
from tests.api.conftest import auth
from tests.conftest import live_server
from tests.mcp.conftest import MODES, mcp_client, round_robin_proxy


def _status_becomes(schema: str, wanted: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        with schema_context(schema):
            found = list(Execution.objects.values_list("status", flat=True))
        status = found[0] if found else ""
        if status == wanted:
            return status
        time.sleep(0.05)
    return status


@pytest.mark.parametrize("server", ["daphne", "uvicorn", "granian"])
def test_each_asgi_server_serves_mcp_and_stops_cleanly(server, live_agent, fake_llm):
    """uvicorn and granian send lifespan events, daphne none: the session manager starts either way, and
    SIGTERM ends the process within 10 s after MCP work (``live_server`` fails otherwise)."""
    with live_server(server) as live:
        for mode in MODES:
            fake_llm.script(live_agent.key, {"reply": f"via {server}", "chunks": 2})

            async def main(mode: str = mode) -> Any:
                async with mcp_client(live.url, live_agent.persona.user_key, mode=mode) as client:
                    tools = await client.list_tools()
                    result = await client.call_tool(live_agent.agent.slug, {"message": "hi"})
                    return tools, result

            tools, result = asyncio.run(main())
            assert live_agent.agent.slug in [tool.name for tool in tools.tools]
            assert result.is_error is False and result.content[0].text == f"via {server}"


def test_two_processes_behind_one_url(live_agent, fake_llm):
    schema = live_agent.persona.schema
    with live_server() as first, live_server() as second:
        with round_robin_proxy([first.port, second.port]) as proxy:
            fake_llm.script(
                live_agent.key, {"reply": "one two three", "chunks": 3, "chunk_delay": 0.05}
            )
            progress: list[str | None] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append(message)

            async def session() -> Any:
                # Every request on a new connection: initialize, list and call alternate.
                async with mcp_client(
                    proxy.url, live_agent.persona.user_key, mode="legacy", fresh_connections=True
                ) as client:
                    tools = await client.list_tools()
                    result = await client.call_tool(
                        live_agent.agent.slug, {"message": "x"}, progress_callback=on_progress
                    )
                    resources = await client.list_resources()
                    return tools, result, resources

            tools, result, resources = asyncio.run(session())
            assert proxy.served[first.port] >= 2 and proxy.served[second.port] >= 2
            assert live_agent.agent.slug in [tool.name for tool in tools.tools]
            assert result.is_error is False and result.content[0].text == "one two three"
            assert len(progress) == 3
            assert [str(r.uri) for r in resources.resources] == [
                f"execution://{result.structured_content['execution_id']}"
            ]
            with schema_context(schema):
                Execution.objects.all().delete()

            # The cancel notification is a request of its own: it reaches the other process.
            fake_llm.script(
                live_agent.key,
                {"reply": "a b c d e f g h i j k l", "chunks": 12, "chunk_delay": 0.5},
            )

            async def cancelled() -> None:
                first_chunk = asyncio.Event()

                async def on_chunk(value: float, total: float | None, message: str | None) -> None:
                    first_chunk.set()

                async with mcp_client(
                    proxy.url, live_agent.persona.user_key, mode="legacy", fresh_connections=True
                ) as client:
                    call = asyncio.create_task(
                        client.call_tool(
                            live_agent.agent.slug, {"message": "slow"}, progress_callback=on_chunk
                        )
                    )
                    await asyncio.wait_for(first_chunk.wait(), 10)
                    call.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await call
                    await asyncio.sleep(0)

            asyncio.run(cancelled())
            # 12 chunks 0.5 s apart take 6 s; the cancel ends the run long before.
            assert _status_becomes(schema, "cancelled", timeout=4) == "cancelled"
            # Cancelled by the client's closed stream or its notification, whichever came first.
            assert proxy.backend_of(b'"slow"')


LEGACY = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": "2025-11-25",
}


def test_a_cancel_notification_sent_to_another_process_stops_the_call(live_agent, fake_llm):
    """The call streams from one process; the client's notifications/cancelled (a POST of its
    own) lands on the other. The run stops there and the call answers "cancelled"."""
    fake_llm.script(
        live_agent.key, {"reply": "a b c d e f g h i j k l", "chunks": 12, "chunk_delay": 0.5}
    )
    headers = {**LEGACY, **auth(live_agent.persona.user_key)}
    call = {
        "jsonrpc": "2.0",
        "id": "call-1",
        "method": "tools/call",
        "params": {
            "name": live_agent.agent.slug,
            "arguments": {"message": "slow"},
            "_meta": {"progressToken": "p1"},
        },
    }
    cancel = {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": "call-1", "reason": "user gave up"},
    }
    with live_server() as first, live_server() as second:
        with httpx.Client(timeout=20) as client:
            with client.stream("POST", f"{first.url}/mcp", json=call, headers=headers) as stream:
                assert stream.status_code == 200, stream.read()
                messages = []
                for line in stream.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    message = json.loads(line[5:])
                    messages.append(message)
                    if message.get("method") == "notifications/progress":
                        if len(messages) == 1:
                            # Another key of the same tenant: its cancel names no call of its.
                            other = {**headers, **auth(live_agent.persona.admin_key)}
                            sent = client.post(f"{second.url}/mcp", json=cancel, headers=other)
                            assert sent.status_code == 202, sent.text
                        if len(messages) == 3:
                            sent = client.post(f"{second.url}/mcp", json=cancel, headers=headers)
                            assert sent.status_code == 202, sent.text
                    if "result" in message or "error" in message:
                        break
    result = messages[-1]["result"]
    assert result["isError"] is True
    assert "cancelled" in result["content"][0]["text"]
    # Past the other key's cancel, far short of the 12 chunks: the run stopped when the other
    # process got the caller's own cancel.
    progressed = sum(1 for m in messages if m.get("method") == "notifications/progress")
    assert 3 <= progressed < 8
    with schema_context(live_agent.persona.schema):
        (execution,) = Execution.objects.all()
    assert execution.status == "cancelled"


@pytest.mark.filterwarnings("ignore:resources/subscribe is removed")
def test_a_legacy_subscription_made_on_one_process_notifies_from_the_other(live_agent, fake_llm):
    """The session's notification stream (GET) and its resources/subscribe go to different
    processes: the subscription is stored, the stream's process follows it."""
    fake_llm.script(live_agent.key, {"reply": "a b c d", "chunks": 4, "chunk_delay": 0.3})
    with live_server() as first, live_server() as second:
        with round_robin_proxy([first.port, second.port]) as proxy:

            async def main() -> list[Any]:
                seen: list[Any] = []
                arrived = asyncio.Event()

                async def on_message(message: Any) -> None:
                    if isinstance(message, ResourceUpdatedNotification):
                        seen.append(message)
                        arrived.set()

                async with httpx.AsyncClient(base_url=first.url, timeout=20) as rest:
                    async with rest.stream(
                        "POST",
                        f"/agents/{live_agent.agent.id}/execute/stream",
                        headers=auth(live_agent.persona.user_key),
                        json={"input": {"message": "go"}},
                    ) as stream:
                        execution_id = stream.headers["Location"].rsplit("/", 2)[-2]
                        async with mcp_client(
                            proxy.url,
                            live_agent.persona.user_key,
                            mode="legacy",
                            fresh_connections=True,
                            message_handler=on_message,
                        ) as client:
                            await client.subscribe_resource(f"execution://{execution_id}")
                            async with asyncio.timeout(20):
                                await arrived.wait()
                        async for _ in stream.aiter_bytes():
                            pass
                return seen

            seen = asyncio.run(main())
            assert seen
            (streamed,) = proxy.backend_of(b"GET /mcp")
            (subscribed,) = proxy.backend_of(b"resources/subscribe")
            assert streamed != subscribed
