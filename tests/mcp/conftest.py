"""Fixtures for the MCP tests: the SDK's own client over HTTP against a live server."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

# Both protocol eras the server serves: the initialize handshake and the stateless one.
MODES = ("legacy", "2026-07-28")

# A raw 2025-11-25 handshake, for tests that look at HTTP itself (status, headers, session ids)
# rather than through the SDK.
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}


@contextlib.asynccontextmanager
async def mcp_client(
    url: str,
    key: str | None,
    *,
    mode: str,
    headers: dict[str, str] | None = None,
    fresh_connections: bool = False,
    message_handler: Any = None,
) -> AsyncIterator[Client]:
    """The SDK's client on ``url``/mcp with ``key`` as bearer credential. ``fresh_connections``:
    a new TCP connection per request (behind a round-robin proxy: each may reach another
    server process)."""
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    http = create_mcp_http_client(headers=sent)
    if fresh_connections:
        http = httpx2.AsyncClient(
            headers=sent,
            timeout=httpx2.Timeout(30, read=300),
            limits=httpx2.Limits(max_keepalive_connections=0),
        )
    async with http:
        transport = streamable_http_client(f"{url}/mcp", http_client=http)
        async with Client(
            transport,  # type: ignore[arg-type]
            mode=mode,
            read_timeout_seconds=20,
            message_handler=message_handler,
        ) as client:
            yield client


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# The REST tests' live agent: a committed agent in alpha's schema answering from the fake LLM.
from tests.api.conftest import live_agent, llm_agent  # noqa: E402,F401


@dataclass
class RoundRobinProxy:
    """A TCP proxy on a free local port handing each new connection to the next backend."""

    backends: list[int]
    port: int = 0
    served: dict[int, int] = field(default_factory=dict)
    # (backend port, what the client sent first: its first 64 KiB) per connection, in order.
    connections: list[tuple[int, bytearray]] = field(default_factory=list)

    def backend_of(self, needle: bytes) -> list[int]:
        """The backends of the connections whose request contained ``needle``."""
        return [port for port, sent in self.connections if needle in sent]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: bytearray | None = None
) -> None:
    try:
        while data := await reader.read(65536):
            if seen is not None and len(seen) < 65536:
                seen.extend(data[: 65536 - len(seen)])
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@contextlib.contextmanager
def round_robin_proxy(backends: list[int]) -> Iterator[RoundRobinProxy]:
    proxy = RoundRobinProxy(backends, served={port: 0 for port in backends})
    turns = itertools.cycle(backends)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def handle(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        port = next(turns)
        proxy.served[port] += 1
        seen = bytearray()
        proxy.connections.append((port, seen))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(_pipe(client_reader, writer, seen), _pipe(reader, client_writer))

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        proxy.port = server.sockets[0].getsockname()[1]
        started.set()
        async with server:
            await stop.wait()
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield proxy
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
