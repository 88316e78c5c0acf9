"""Tools of remote MCP servers inside agents: the engine's runner for tool kind ``mcp``.

An agent's tool ``{"kind": "mcp", "config": {"server": "<name>", "tool": "<remote tool>"}}``
names a server the tenant's operators registered (``agents.services.mcp_servers``) and one of
its allowed tools. Each call, through the SDK's client over Streamable HTTP:

- reads the server's row in the run's tenant schema (disabled or removed since: an error
  result), checks its URL against SSRF again (the name may resolve elsewhere now);
- sends only the server's own auth header, never the caller's credential (no confused deputy);
- is bounded by the server's ``timeout_seconds`` (connect, handshake and call together);
- answers the model with the tool's text (structured content as JSON when there is no text);
  any failure is an error result the model sees, never an exception in the engine.

The calls appear in the run's event log as ``tool_call``/``tool_result`` like every tool.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx2
import mcp_types as types
from django.conf import settings
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from agents.engine import ToolCallContext, ToolOutcome
from agents.models import McpServer
from agents.providers.ssrf import UnsafeURL, check_url
from agents.services.mcp_servers import mcp_auth_header
from tenants.context import in_schema

logger = logging.getLogger(__name__)

# What a tool may return to the model at most (the rest is cut, said so).
MAX_RESULT_CHARS = 64 * 1024


def _server(name: str) -> tuple[McpServer, tuple[str, str] | None] | None:
    server = McpServer.objects.filter(name=name, enabled=True).first()
    if server is None:
        return None
    return server, mcp_auth_header(server)


def _text_of(result: types.CallToolResult) -> str:
    texts = [block.text for block in result.content if isinstance(block, types.TextContent)]
    if texts:
        text = "\n".join(texts)
    elif result.structured_content is not None:
        text = json.dumps(result.structured_content, default=str)
    else:
        text = ""
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + "\n[truncated]"
    return text


def _first_cause(exc: BaseException) -> BaseException:
    # The SDK's client runs in a task group: its errors arrive wrapped in exception groups.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class McpToolRunner:
    """Runs ``kind="mcp"`` tools of one tenant (the run's schema)."""

    def __init__(self, schema_name: str) -> None:
        self.schema_name = schema_name

    async def call(
        self, name: str, arguments: dict[str, Any], *, context: ToolCallContext
    ) -> ToolOutcome:
        config = context.definition.config
        server_name, tool = str(config.get("server", "")), str(config.get("tool", ""))
        found = await in_schema(self.schema_name, _server, server_name)
        if found is None:
            return ToolOutcome(f"MCP server {server_name!r} is not available", True)
        server, header = found
        if tool not in (server.allowed_tools or []):
            return ToolOutcome(f"tool {tool!r} is not allowed on MCP server {server_name!r}", True)
        try:
            await asyncio.to_thread(
                check_url, server.url, allowed=tuple(settings.PROVIDER_ALLOWED_PRIVATE)
            )
        except UnsafeURL as exc:
            return ToolOutcome(f"MCP server {server_name!r} refused: {exc}", True)
        headers = {header[0]: header[1]} if header is not None else {}
        try:
            async with asyncio.timeout(server.timeout_seconds):
                result = await self._call(
                    server.url, headers, tool, arguments, server.timeout_seconds
                )
        except TimeoutError:
            return ToolOutcome(
                f"MCP server {server_name!r} did not answer within {server.timeout_seconds:g} s",
                True,
            )
        except Exception as exc:  # any transport or protocol failure is the tool's error
            cause = _first_cause(exc)
            if isinstance(cause, MCPError):
                return ToolOutcome(f"MCP server {server_name!r}: {cause.message}", True)
            logger.info("MCP tool %s on %s failed: %s", tool, server_name, type(cause).__name__)
            return ToolOutcome(f"MCP server {server_name!r} failed: {type(cause).__name__}", True)
        return ToolOutcome(_text_of(result), bool(result.is_error))

    @staticmethod
    async def _call(
        url: str, headers: dict[str, str], tool: str, arguments: dict[str, Any], seconds: float
    ) -> types.CallToolResult:
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(seconds))
        async with http:
            transport = streamable_http_client(url, http_client=http)
            async with Client(transport, mode="auto", read_timeout_seconds=seconds) as client:
                return await client.call_tool(tool, arguments)
