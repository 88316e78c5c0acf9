"""Validation of agent configuration: every error names the field that was wrong.

Shared by the admin, the REST API and commands, so that an agent is held to the same rules
however it is edited.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from agents.engine import VIRTUAL_MODELS, is_virtual
from agents.engine.schemas import SchemaProblem, check_schema
from agents.providers.base import RETRYABLE_KINDS, ErrorKind
from agents.services.credentials import validate_base_url
from config.errors import ValidationFailed

# Every retryable provider error kind, in the providers' order (the API lists them as choices).
RETRYABLE_ERRORS = tuple(kind.value for kind in ErrorKind if kind in RETRYABLE_KINDS)
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,98}[a-z0-9]$|^[a-z0-9]$")
TOOL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
DOT_PATH_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", details={field: [message]})


def number(
    data: dict[str, Any], field: str, low: float, high: float, *, integer: bool = False
) -> None:
    value = data.get(field)
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        raise fail(field, "must be " + ("an integer" if integer else "a number"))
    if not low <= value <= high:
        raise fail(field, f"must be between {low:g} and {high:g}")


def string_list(data: dict[str, Any], field: str, *, max_items: int = 50) -> None:
    value = data.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise fail(field, "must be a list of non-empty strings")
    if len(value) > max_items:
        raise fail(field, f"at most {max_items} items")


def json_schema(value: Any, field: str) -> None:
    """A schema tenants write: valid, only local ``$ref``, patterns that compile (the engine
    runs the same check before every run, see ``agents.engine.schemas``)."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise fail(field, "must be a JSON Schema object")
    try:
        check_schema(value)
    except SchemaProblem as exc:
        raise fail(field, str(exc)) from None


def mapping(data: dict[str, Any], field: str) -> None:
    value = data.get(field, {})
    if not isinstance(value, dict):
        raise fail(field, "must be an object")
    for key, path in value.items():
        if not isinstance(path, str) or not DOT_PATH_RE.match(
            str(key) if field == "output_mapping" else path
        ):
            raise fail(field, f"entry {key!r} must map to a dot path like 'user_context.user_id'")


def model_name(value: Any, field: str = "model") -> None:
    if not isinstance(value, str) or not value.strip():
        raise fail(field, "must name a model")
    if is_virtual(value) and value not in VIRTUAL_MODELS:
        raise fail(field, f"unknown virtual model; use one of {', '.join(sorted(VIRTUAL_MODELS))}")


def tools(
    data: dict[str, Any],
    *,
    self_slug: str | None,
    agent_exists: Any,
    mcp_tool_problem: Any = None,
) -> None:
    value = data.get("tools", [])
    if not isinstance(value, list):
        raise fail("tools", "must be a list of tool definitions")
    seen: set[str] = set()
    for index, tool in enumerate(value):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise fail(where, "must be an object")
        name = tool.get("name")
        if not isinstance(name, str) or not TOOL_NAME_RE.match(name):
            raise fail(f"{where}.name", "letters, digits, _ and -, starting with a letter or _")
        if name in seen:
            raise fail(f"{where}.name", f"duplicate tool name {name!r}")
        seen.add(name)
        kind = tool.get("kind", "http")
        config = tool.get("config", {})
        if not isinstance(config, dict):
            raise fail(f"{where}.config", "must be an object")
        json_schema(tool.get("parameters", {"type": "object"}), f"{where}.parameters")
        if kind == "http":
            url = config.get("url")
            if not isinstance(url, str) or not url:
                raise fail(f"{where}.config.url", "required for http tools")
            try:
                validate_base_url(url)
            except ValidationFailed as exc:
                raise fail(f"{where}.config.url", exc.message.partition(": ")[2]) from None
            if str(config.get("method", "POST")).upper() not in {
                "GET",
                "POST",
                "PUT",
                "PATCH",
                "DELETE",
            }:
                raise fail(f"{where}.config.method", "must be GET, POST, PUT, PATCH or DELETE")
        elif kind == "agent":
            target = config.get("agent")
            if not isinstance(target, str) or not target:
                raise fail(f"{where}.config.agent", "must name another agent of this tenant")
            if target == self_slug:
                raise fail(f"{where}.config.agent", "an agent cannot call itself")
            if not agent_exists(target):
                raise fail(f"{where}.config.agent", f"no agent {target!r}")
        elif kind == "mcp":
            unknown = sorted(set(config) - {"server", "tool"})
            if unknown:
                raise fail(f"{where}.config.{unknown[0]}", "unknown field")
            problem = (
                mcp_tool_problem(config.get("server"), config.get("tool"))
                if mcp_tool_problem is not None
                else "config.server: MCP tools cannot be checked here"
            )
            if problem is not None:
                field, _, message = problem.partition(": ")
                raise fail(f"{where}.{field}", message)
        else:
            raise fail(f"{where}.kind", "must be 'http', 'agent' or 'mcp'")


def fallbacks(data: dict[str, Any], *, credential_exists: Any) -> None:
    value = data.get("fallback_models", [])
    if not isinstance(value, list) or len(value) > 5:
        raise fail("fallback_models", "must be a list of at most 5 models")
    for index, item in enumerate(value):
        where = f"fallback_models[{index}]"
        if isinstance(item, str):
            model_name(item, where)
            continue
        if not isinstance(item, dict) or set(item) - {"model", "credential"}:
            raise fail(where, 'must be a model name or {"model": ..., "credential": ...}')
        model_name(item.get("model"), f"{where}.model")
        credential = item.get("credential")
        if credential is not None and not credential_exists(credential):
            raise fail(f"{where}.credential", f"no provider credential {credential!r}")


def validate_agent_config(
    data: dict[str, Any],
    *,
    self_slug: str | None,
    agent_exists: Any,
    credential_exists: Any,
    mcp_tool_problem: Any = None,
) -> None:
    """Raise ``ValidationFailed`` naming the first wrong field of an agent configuration."""
    slug = data.get("slug")
    if not isinstance(slug, str) or not SLUG_RE.match(slug) or slug.startswith("agent_"):
        raise fail("slug", "lowercase letters, digits and hyphens (1-100)")
    if not isinstance(data.get("name"), str) or not data["name"].strip():
        raise fail("name", "must not be empty")
    model_name(data.get("model"))
    number(data, "temperature", 0, 2)
    number(data, "top_p", 0, 1)
    number(data, "frequency_penalty", -2, 2)
    number(data, "presence_penalty", -2, 2)
    number(data, "max_tokens", 1, settings.AGENT_MAX_TOKENS_LIMIT, integer=True)
    string_list(data, "stop_sequences", max_items=4)
    string_list(data, "capabilities")
    for field in ("system_prompt", "user_template", "context_instructions", "description"):
        if not isinstance(data.get(field, ""), str):
            raise fail(field, "must be a string")
    json_schema(data.get("input_schema"), "input_schema")
    json_schema(data.get("output_schema"), "output_schema")
    mapping(data, "input_mapping")
    mapping(data, "output_mapping")
    number(data, "retry_max_attempts", 1, 10, integer=True)
    number(data, "retry_backoff_seconds", 0, 300)
    retry_on = data.get("retry_on_errors", [])
    if not isinstance(retry_on, list) or any(kind not in RETRYABLE_ERRORS for kind in retry_on):
        raise fail("retry_on_errors", f"a list drawn from {', '.join(RETRYABLE_ERRORS)}")
    number(data, "timeout_seconds", 1, settings.AGENT_MAX_TIMEOUT_SECONDS)
    number(data, "max_tool_steps", 1, settings.AGENT_MAX_TOOL_STEPS, integer=True)
    tools(data, self_slug=slug, agent_exists=agent_exists, mcp_tool_problem=mcp_tool_problem)
    fallbacks(data, credential_exists=credential_exists)
