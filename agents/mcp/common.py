"""What every MCP handler shares: the caller fixed by ``agents.mcp.app``, the permission check
through ``tenants.access``, cursors, and content blocks."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from config.errors import PermissionRefused
from tenants.access import authorize_async
from tenants.principals import Principal
from tenants.roles import Permission

# Set by agents.mcp.app on the ASGI scope of every authenticated /mcp request.
PRINCIPAL_SCOPE_KEY = "cb_mcp_principal"
REQUEST_ID_SCOPE_KEY = "cb_mcp_request_id"
SESSION_SCOPE_KEY = "cb_mcp_session"

PAGE_SIZE = 50
# MCP's "resource not found" (2025-11-25); -32602 for anything else the caller got wrong.
RESOURCE_NOT_FOUND = -32002
SCHEME = "execution"


def caller(ctx: ServerRequestContext[Any, Any]) -> tuple[Principal, str]:
    """The principal and request id ``agents.mcp.app`` fixed for this HTTP request. Fails
    closed: a handler reached without them refuses."""
    scope = getattr(ctx.request, "scope", None) or {}
    principal = scope.get(PRINCIPAL_SCOPE_KEY)
    if not isinstance(principal, Principal):
        raise MCPError(types.INVALID_REQUEST, "Not authenticated.")
    return principal, str(scope.get(REQUEST_ID_SCOPE_KEY) or "")


async def allow(principal: Principal, permission: Permission, **details: Any) -> None:
    try:
        await authorize_async(principal, permission, transport="mcp", **details)
    except PermissionRefused as refused:
        raise MCPError(types.INVALID_REQUEST, refused.message) from None


def page_offset(params: types.PaginatedRequestParams | None) -> int:
    cursor = params.cursor if params is not None else None
    if not cursor:
        return 0
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        offset = int(value["offset"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise MCPError(types.INVALID_PARAMS, "Invalid cursor.") from None
    if offset < 0:
        raise MCPError(types.INVALID_PARAMS, "Invalid cursor.")
    return offset


def page_cursor(offset: int | None) -> str | None:
    if offset is None:
        return None
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def text_content(value: Any) -> types.TextContent:
    return types.TextContent(
        type="text", text=value if isinstance(value, str) else json_text(value)
    )


def error_result(message: str, **structured: Any) -> types.CallToolResult:
    return types.CallToolResult(
        content=[text_content(message)], is_error=True, structured_content=structured or None
    )
