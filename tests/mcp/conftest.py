"""Fixtures for the MCP tests: the SDK's own client over HTTP against a live server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

# Both protocol eras the server serves: the initialize handshake and the stateless one.
MODES = ("legacy", "2026-07-28")


@contextlib.asynccontextmanager
async def mcp_client(
    url: str, key: str | None, *, mode: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    http = create_mcp_http_client(headers=sent)
    async with http:
        transport = streamable_http_client(f"{url}/mcp", http_client=http)
        async with Client(transport, mode=mode, read_timeout_seconds=20) as client:  # type: ignore[arg-type]
            yield client


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# The REST tests' live agent: a committed agent in alpha's schema answering from the fake LLM.
from tests.api.conftest import live_agent  # noqa: E402,F401
