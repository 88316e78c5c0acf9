"""Secrets in HTTP tool headers (``tools[i].config.headers``): sealed at rest, write-only.

A tool's headers usually carry the tenant's token for the service the tool calls, so they are
treated like provider keys (``agents.services.credentials``):

- **Sealed on save** with the same key ring (``FIELD_ENCRYPTION_KEYS``): the agent row and every
  ``AgentVersion.config`` hold ``{"sealed": "<kid>$<token>"}`` for each header value, never the
  clear text, so version history does not keep old secrets readable.
- **Masked on read**: every interface shows each value as :data:`MASK`.
- **Write-only**: a save that sends :data:`MASK` back (or a tool without ``headers``) keeps the
  stored value of the same tool (by name) and header, as long as the tool's URL stays on the
  same host; any other string replaces it. A sealed value is never accepted from input: input
  is either the mask or clear text.
- **Opened in memory** only, for the engine: :func:`open_tool_secrets`.

Values stored as plain strings (agents saved before sealing existed) are read as clear text
until ``manage.py reencrypt_secrets`` (or the migration that introduced sealing) seals them.
"""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import urlsplit

from agents.crypto import (
    FieldKeyRing,
    SecretUnreadable,
    decrypt_secret,
    encrypt_secret,
    field_key_ring,
)
from agents.models import Agent, AgentVersion
from config.errors import ValidationFailed

MASK = "********"
SEALED = "sealed"
# RFC 9110 token characters: anything else cannot be sent as a header name.
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
MAX_HEADER_VALUE_CHARS = 8192


def _is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {SEALED} and isinstance(value[SEALED], str)


def _headers_of(tool: Any) -> dict[str, Any] | None:
    if not isinstance(tool, dict) or not isinstance(tool.get("config"), dict):
        return None
    headers = tool["config"].get("headers")
    return headers if isinstance(headers, dict) else None


def _origin(tool: dict[str, Any]) -> tuple[str, str, int | None] | None:
    url = tool["config"].get("url") if isinstance(tool.get("config"), dict) else None
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _opened(value: Any) -> str:
    if _is_sealed(value):
        return decrypt_secret(value[SEALED])
    return str(value)  # stored before sealing existed: clear text


def _kept(value: Any) -> dict[str, str]:
    return value if _is_sealed(value) else {SEALED: encrypt_secret(str(value))}


def _sealed(value: str, previous: Any) -> dict[str, str]:
    # The same secret sent again keeps its stored seal: Fernet tokens differ on every call, and
    # a new token would look like a change and make a new agent version for nothing.
    if previous is not None:
        try:
            if _opened(previous) == value:
                return _kept(previous)
        except SecretUnreadable:
            pass  # sealed with a key no longer configured: the new value replaces it
    return {SEALED: encrypt_secret(value)}


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", details={field: [message]})


MOVED = (
    "the tool's URL now points to another host: enter the header values again "
    "(a stored secret is never sent to a new host unseen)"
)


def seal_tool_secrets(tools: Any, *, stored: Any) -> Any:
    """``tools`` as given by an operator, with every header value sealed; ``stored`` is the
    agent's current (sealed) tools, for values sent back as :data:`MASK` or left out.

    A stored value is kept for the tool of the same name, and only while the tool's URL stays
    on the same scheme, host and port: otherwise whoever may edit the agent (but never read
    its secrets) could point the tool at their own server and receive them.

    Raises ``ValidationFailed`` naming the header when a value is not a one-line string, is
    the mask while nothing is stored for that tool and header, or would be kept across a change
    of host. Anything else that is wrong with ``tools`` is left for ``validate_agent_config``
    to name. Never changes its arguments.
    """
    if not isinstance(tools, list):
        return tools
    previous = {
        tool["name"]: tool
        for tool in (stored if isinstance(stored, list) else ())
        if isinstance(tool, dict) and isinstance(tool.get("name"), str)
    }
    sealed_tools: list[Any] = []
    for index, given in enumerate(tools):
        if not isinstance(given, dict) or not isinstance(given.get("config"), dict):
            sealed_tools.append(given)
            continue
        tool = copy.deepcopy(given)
        config = tool["config"]
        before_tool = previous.get(tool["name"]) if isinstance(tool.get("name"), str) else None
        kept = (_headers_of(before_tool) or {}) if before_tool is not None else {}
        kept_by_name = {str(name).lower(): value for name, value in kept.items()}
        same_host = before_tool is not None and _origin(before_tool) == _origin(tool)
        where = f"tools[{index}].config.headers"
        if "headers" not in config:
            if kept:  # left out: the stored headers stay
                if not same_host:
                    raise _invalid(where, MOVED)
                config["headers"] = {name: _kept(value) for name, value in kept.items()}
            sealed_tools.append(tool)
            continue
        headers = config["headers"]
        if not isinstance(headers, dict):
            raise _invalid(where, "must be an object of header names to values")
        sealed: dict[str, Any] = {}
        for name, value in headers.items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise _invalid(where, f"{name!r} is not a valid header name")
            before = kept_by_name.get(name.lower())
            if value == MASK:
                if before is None:
                    raise _invalid(
                        f"{where}.{name}",
                        f"{MASK!r} keeps a stored value, and none is stored for this header",
                    )
                if not same_host:
                    raise _invalid(f"{where}.{name}", MOVED)
                sealed[name] = _kept(before)
            elif isinstance(value, str) and "\n" not in value and "\r" not in value:
                if len(value) > MAX_HEADER_VALUE_CHARS:
                    raise _invalid(f"{where}.{name}", "is too long")
                sealed[name] = _sealed(value, before)
            else:
                raise _invalid(f"{where}.{name}", "must be a single-line string")
        config["headers"] = sealed
        sealed_tools.append(tool)
    return sealed_tools


def mask_tool_secrets(tools: Any) -> Any:
    """``tools`` as any interface may show them: every header value replaced by :data:`MASK`."""
    if not isinstance(tools, list):
        return tools
    masked = copy.deepcopy(tools)
    for tool in masked:
        headers = _headers_of(tool)
        if headers is not None:
            tool["config"]["headers"] = {name: MASK for name in headers}
    return masked


def mask_config_secrets(config: dict[str, Any]) -> dict[str, Any]:
    """An agent configuration (an ``AgentVersion.config``) as interfaces may show it."""
    if "tools" not in config:
        return dict(config)
    return {**config, "tools": mask_tool_secrets(config["tools"])}


def open_tool_secrets(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``tools`` with every header value opened: for the engine, in memory only. Raises
    ``agents.crypto.SecretUnreadable`` if a value was sealed with a key no longer configured."""
    opened = copy.deepcopy(list(tools))
    for tool in opened:
        headers = _headers_of(tool)
        if headers is not None:
            tool["config"]["headers"] = {name: _opened(value) for name, value in headers.items()}
    return opened


# ---- key rotation ----


def reseal_tools(tools: Any, ring: FieldKeyRing) -> tuple[Any, bool]:
    """``tools`` with every header value sealed by the ring's active key (values sealed by an
    older key are opened and sealed again; clear text left from before sealing is sealed), and
    whether anything changed."""
    if not isinstance(tools, list):
        return tools, False
    changed = False
    resealed = copy.deepcopy(tools)
    for tool in resealed:
        headers = _headers_of(tool)
        if headers is None:
            continue
        for name, value in headers.items():
            if _is_sealed(value):
                if ring.key_id_of(value[SEALED]) == ring.active_kid:
                    continue
                headers[name] = {SEALED: ring.encrypt(ring.decrypt(value[SEALED]))}
            else:
                headers[name] = {SEALED: ring.encrypt(str(value))}
            changed = True
    return resealed, changed


def tool_secrets_reencrypt() -> int:
    """Re-seal the tool header secrets of every agent and every stored version in the current
    schema with the active key. Returns how many rows changed. Call inside a transaction (the
    rows are locked); the ``reencrypt_secrets`` command loops over tenants.

    Versions are immutable in meaning, not in bytes: their secrets must move to the new key too,
    or removing the old key would leave them unreadable.
    """
    ring = field_key_ring()
    changed = 0
    for agent in Agent.objects.select_for_update().only("pk", "tools"):
        tools, dirty = reseal_tools(agent.tools, ring)
        if dirty:
            agent.tools = tools
            agent.save(update_fields=["tools"])
            changed += 1
    for version in AgentVersion.objects.select_for_update().only("pk", "config"):
        tools, dirty = reseal_tools(version.config.get("tools"), ring)
        if dirty:
            version.config = {**version.config, "tools": tools}
            version.save(update_fields=["config"])
            changed += 1
    return changed
