"""Remote MCP servers of a tenant (current schema): registering, changing, removing them, and
what an agent's ``mcp`` tool may name.

The URL is checked like a provider's base URL (no loopback, private, link-local or metadata
address unless the operator allow-listed it in ``PROVIDER_ALLOWED_PRIVATE``), and again before
every call. The auth header is sealed with ``agents.crypto`` and only ever opened to send it to
that server: never logged, never returned (``has_auth_header`` says whether there is one).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.db import transaction

from agents.crypto import decrypt_secret, encrypt_secret
from agents.models import Agent, McpServer
from agents.services.credentials import validate_base_url
from config.errors import Conflict, NotFound, ValidationFailed
from tenants.audit.services import audit_record

FIELDS = frozenset({"name", "url", "auth_header", "allowed_tools", "timeout_seconds", "enabled"})
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
# MCP tool names: 1-128 characters of [A-Za-z0-9_.-].
REMOTE_TOOL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,100}$")
MAX_TIMEOUT_SECONDS = 120.0


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", details={field: [message]})


def mcp_server_check(data: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _fail("body", "must be a JSON object")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise _fail(unknown[0], "unknown field")
    if not partial:
        for required in ("name", "url"):
            if required not in data:
                raise _fail(required, "required")
    if "name" in data and (not isinstance(data["name"], str) or not NAME_RE.match(data["name"])):
        raise _fail("name", "lowercase letters, digits and hyphens (1-100)")
    if "url" in data:
        url = data["url"]
        if not isinstance(url, str) or not url or len(url) > 500:
            raise _fail("url", "an http(s) URL of at most 500 characters")
        try:
            validate_base_url(url)
        except ValidationFailed as exc:
            raise _fail("url", exc.message.partition(": ")[2]) from None
    if "auth_header" in data and data["auth_header"] not in (None, ""):
        header = data["auth_header"]
        name, _, value = header.partition(":") if isinstance(header, str) else ("", "", "")
        if (
            not _HEADER_NAME.match(name.strip())
            or not value.strip()
            or len(header) > 4096
            or any(ch in header for ch in "\r\n\x00")
        ):
            raise _fail("auth_header", "one header, 'Name: value' (e.g. 'Authorization: Bearer …')")
    if "allowed_tools" in data:
        tools = data["allowed_tools"]
        if (
            not isinstance(tools, list)
            or len(tools) > 100
            or not all(isinstance(t, str) and REMOTE_TOOL_RE.match(t) for t in tools)
        ):
            raise _fail("allowed_tools", "a list of at most 100 MCP tool names")
    if "timeout_seconds" in data:
        timeout = data["timeout_seconds"]
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise _fail("timeout_seconds", "must be a number")
        if not 1 <= timeout <= MAX_TIMEOUT_SECONDS:
            raise _fail("timeout_seconds", f"must be between 1 and {MAX_TIMEOUT_SECONDS:g}")
    if "enabled" in data and not isinstance(data["enabled"], bool):
        raise _fail("enabled", "must be true or false")
    return data


def _apply(server: McpServer, data: dict[str, Any]) -> None:
    for field in ("name", "url", "allowed_tools", "enabled"):
        if field in data:
            setattr(server, field, data[field])
    if "timeout_seconds" in data:
        server.timeout_seconds = float(data["timeout_seconds"])
    if "auth_header" in data:
        header = data["auth_header"]
        server.auth_header_encrypted = encrypt_secret(header.strip()) if header else ""


def _audit(server: McpServer, action: str, actor: str, schema_name: str, **details: Any) -> None:
    audit_record(
        schema_name=schema_name,
        actor=actor,
        action=action,
        target_type="mcp_server",
        target_id=str(server.pk),
        details=details,
    )


def mcp_server_create(*, data: dict[str, Any], actor: str, schema_name: str) -> McpServer:
    mcp_server_check(data, partial=False)
    server = McpServer()
    _apply(server, data)
    with transaction.atomic():
        if McpServer.objects.filter(name=server.name).exists():
            raise Conflict(f"name: an MCP server {server.name!r} already exists")
        server.save()
    _audit(server, "mcp_server.create", actor, schema_name, fields=sorted(data))
    return server


def mcp_server_update(
    *, server: McpServer, changes: dict[str, Any], actor: str, schema_name: str
) -> McpServer:
    mcp_server_check(changes, partial=True)
    if not changes:
        raise _fail("body", "nothing to change")
    with transaction.atomic():
        locked = McpServer.objects.select_for_update().get(pk=server.pk)
        if (
            "name" in changes
            and McpServer.objects.filter(name=changes["name"]).exclude(pk=locked.pk).exists()
        ):
            raise Conflict(f"name: an MCP server {changes['name']!r} already exists")
        if "name" in changes and changes["name"] != locked.name and _used_by(locked.name):
            raise Conflict("name: agents' tools name this server; change them first")
        _apply(locked, changes)
        locked.save()
    _audit(locked, "mcp_server.update", actor, schema_name, fields=sorted(changes))
    return locked


def _used_by(name: str) -> list[str]:
    """Slugs of the agents with a tool of the server ``name``."""
    return sorted(
        agent.slug
        for agent in Agent.objects.only("slug", "tools")
        if any(
            isinstance(tool, dict)
            and tool.get("kind") == "mcp"
            and (tool.get("config") or {}).get("server") == name
            for tool in agent.tools or []
        )
    )


def mcp_server_delete(*, server: McpServer, actor: str, schema_name: str) -> None:
    users = _used_by(server.name)
    if users:
        raise Conflict(
            f"agents use this server's tools: {', '.join(users[:10])}",
            details={"agents": users},
        )
    server.delete()
    _audit(server, "mcp_server.delete", actor, schema_name)


def mcp_server_get(ref: str) -> McpServer:
    """A server by name or id; NotFound otherwise."""
    server = McpServer.objects.filter(name=ref).first()
    if server is None:
        try:
            server = McpServer.objects.filter(pk=uuid.UUID(ref)).first()
        except ValueError:
            server = None  # neither a name nor an id
    if server is None:
        raise NotFound("MCP server not found.")
    return server


def mcp_server_json(server: McpServer) -> dict[str, Any]:
    return {
        "id": str(server.id),
        "name": server.name,
        "url": server.url,
        "has_auth_header": server.has_auth_header,
        "allowed_tools": list(server.allowed_tools or []),
        "timeout_seconds": server.timeout_seconds,
        "enabled": server.enabled,
        "created_at": server.created_at.isoformat(),
        "updated_at": server.updated_at.isoformat(),
    }


def mcp_tool_problem(server_name: Any, tool: Any) -> str | None:
    """Why an agent's ``mcp`` tool may not name ``tool`` of ``server_name`` (None: it may)."""
    if not isinstance(server_name, str) or not server_name:
        return "config.server: must name an MCP server of this tenant"
    server = McpServer.objects.filter(name=server_name).first()
    if server is None:
        return f"config.server: no MCP server {server_name!r}"
    if not isinstance(tool, str) or not REMOTE_TOOL_RE.match(tool):
        return "config.tool: must name a tool of the MCP server"
    if tool not in (server.allowed_tools or []):
        return f"config.tool: {tool!r} is not among the server's allowed_tools"
    return None


def mcp_auth_header(server: McpServer) -> tuple[str, str] | None:
    """The server's auth header opened, to send to that server only."""
    if not server.auth_header_encrypted:
        return None
    name, _, value = decrypt_secret(server.auth_header_encrypted).partition(":")
    return name.strip(), value.strip()
