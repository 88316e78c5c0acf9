from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from agents.engine import ToolCallContext, ToolDefinition
from agents.providers.http_tool import HttpTool


def context_for(config: dict[str, Any], name: str = "lookup") -> ToolCallContext:
    definition = ToolDefinition(name=name, kind="http", config=config)
    return ToolCallContext(definition=definition, call_id="c1", execution_id="e", agent_id="a")


def allow_all(url: str, allowed: Sequence[str]) -> None:
    return None


def mock_client(handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_post_sends_json_body_and_returns_text() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    tool = HttpTool(client=mock_client(handler), url_checker=allow_all)
    outcome = await tool.call(
        "lookup",
        {"q": "x", "n": 2},
        context=context_for(
            {"url": "https://api.test/search", "headers": {"X-Token": "t", "Host": "evil"}}
        ),
    )
    assert not outcome.is_error
    assert json.loads(outcome.content) == {"ok": True}
    assert seen[0].method == "POST"
    assert json.loads(seen[0].content) == {"q": "x", "n": 2}
    assert seen[0].headers["x-token"] == "t"
    assert seen[0].headers["host"] == "api.test"


async def test_get_sends_query_parameters() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="found")

    tool = HttpTool(client=mock_client(handler), url_checker=allow_all)
    outcome = await tool.call(
        "lookup",
        {"q": "a b", "filters": {"x": 1}},
        context=context_for({"url": "https://api.test/s", "method": "get"}),
    )
    assert outcome.content == "found"
    assert seen[0].method == "GET"
    assert seen[0].url.params["q"] == "a b"
    assert json.loads(seen[0].url.params["filters"]) == {"x": 1}


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(404, text="no such thing"), "HTTP 404: no such thing"),
        (httpx.Response(302, headers={"Location": "http://169.254.169.254/"}), "redirects"),
        (httpx.Response(200, content=b"x" * 2048), "exceeds the 1024-byte limit"),
    ],
)
async def test_error_responses(response: httpx.Response, expected: str) -> None:
    tool = HttpTool(
        client=mock_client(lambda request: response),
        url_checker=allow_all,
        max_response_bytes=1024,
    )
    outcome = await tool.call("lookup", {}, context=context_for({"url": "https://api.test/"}))
    assert outcome.is_error
    assert expected in outcome.content


async def test_timeouts_and_transport_errors_are_error_outcomes() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    config = {"url": "https://api.test/", "timeout_seconds": 2}
    outcome = await HttpTool(client=mock_client(slow), url_checker=allow_all).call(
        "lookup", {}, context=context_for(config)
    )
    assert outcome.is_error and "within 2 s" in outcome.content
    outcome = await HttpTool(client=mock_client(broken), url_checker=allow_all).call(
        "lookup", {}, context=context_for(config)
    )
    assert outcome.is_error and "ConnectError" in outcome.content


async def test_missing_url_is_an_error() -> None:
    outcome = await HttpTool(url_checker=allow_all).call("lookup", {}, context=context_for({}))
    assert outcome.is_error


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:5432/",
        "http://[::1]/",
        "http://0x7f000001/",
        "http://localhost/",
        "file:///etc/passwd",
    ],
)
async def test_real_ssrf_guard_refuses_private_targets(url: str) -> None:
    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError("the request must not be sent")

    tool = HttpTool(client=mock_client(never))  # default checker: agents.providers.ssrf
    outcome = await tool.call("lookup", {}, context=context_for({"url": url}))
    assert outcome.is_error
    assert outcome.content.startswith("blocked_url")


async def test_injected_checker_can_refuse() -> None:
    def refuse(url: str, allowed: Sequence[str]) -> None:
        raise ValueError("nope")

    async def async_refuse(url: str, allowed: Sequence[str]) -> None:
        raise ValueError("async nope")

    for checker in (refuse, async_refuse):
        tool = HttpTool(client=mock_client(lambda r: httpx.Response(200)), url_checker=checker)
        outcome = await tool.call("t", {}, context=context_for({"url": "https://x.test/"}))
        assert outcome.is_error and "nope" in outcome.content


# ---- a real local server, reached only through the operator allow-list -------------------


@pytest.fixture
async def local_server() -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        length = 0
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        body = await reader.readexactly(length) if length else b""
        payload = json.dumps({"request": lines[0], "body": body.decode()}).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/echo"
    finally:
        server.close()
        await server.wait_closed()


async def test_local_server_reachable_only_when_allow_listed(local_server: str) -> None:
    allowed = HttpTool(allowed_private=("127.0.0.1",))
    try:
        outcome = await allowed.call(
            "echo", {"hello": "world"}, context=context_for({"url": local_server})
        )
    finally:
        await allowed.aclose()
    assert not outcome.is_error, outcome.content
    echoed = json.loads(outcome.content)
    assert echoed["request"].startswith("POST /echo")
    assert json.loads(echoed["body"]) == {"hello": "world"}

    refused = HttpTool()
    try:
        outcome = await refused.call("echo", {}, context=context_for({"url": local_server}))
    finally:
        await refused.aclose()
    assert outcome.is_error and outcome.content.startswith("blocked_url")


async def test_connect_time_guard_blocks_when_only_the_check_is_bypassed(local_server: str):
    # Even if the pre-flight check passed (e.g. DNS changed since), the default client's
    # connect-time guard refuses the private address.
    tool = HttpTool(url_checker=allow_all)
    try:
        outcome = await tool.call("echo", {}, context=context_for({"url": local_server}))
    finally:
        await tool.aclose()
    assert outcome.is_error
    assert outcome.content.startswith("blocked_url")


async def test_tools_share_the_providers_pooled_client(fake_llm, api_key) -> None:
    # The platform builds one HttpTool per execution; their requests must still reuse the
    # process's pooled (kept-alive, SSRF-guarded) connections rather than open a client each.
    config = {
        "url": f"{fake_llm.url}/v1/chat/completions",
        "headers": {"authorization": f"Bearer {api_key}"},
    }
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(2):
        tool = HttpTool(allowed_private=("127.0.0.1",))
        outcome = await tool.call("llm", body, context=context_for(config))
        assert not outcome.is_error, outcome.content
    ports = {r["client_port"] for r in fake_llm.requests(api_key)}
    assert len(fake_llm.requests(api_key)) == 2
    assert len(ports) == 1
