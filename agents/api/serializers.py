"""Wire formats of the agent and execution endpoints: what responses look like, and the
list queries. Execute bodies are parsed by the execution core (``agents.core.requests``), the
same for every interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from django.http import QueryDict

from agents.models import Agent, Execution, ExecutionStatus
from agents.services.tool_secrets import mask_tool_secrets
from agents.validation import DOT_PATH_RE
from config.errors import ValidationFailed

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


# ---- output ----


def agent_json(agent: Agent) -> dict[str, Any]:
    """An agent as the API shows it: its configuration, the credential by name, no secret."""
    from agents.services.agents import CONFIG_FIELDS

    body: dict[str, Any] = {"id": agent.id}
    body.update({field: getattr(agent, field) for field in CONFIG_FIELDS})
    body["tools"] = mask_tool_secrets(agent.tools)
    body["credential"] = agent.credential.name
    body["version"] = agent.version
    body["created_at"] = agent.created_at.isoformat()
    body["updated_at"] = agent.updated_at.isoformat()
    return body


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def execution_response(execution: Execution) -> dict[str, Any]:
    """The original's response shape, plus usage, cost and the model that answered."""
    return {
        "execution_id": execution.id,
        "agent_id": execution.agent_id,
        "status": execution.status,
        "output": execution.output,
        "error": execution.error_message or None,
        "error_code": execution.error_code or None,
        "created_at": _iso(execution.created_at),
        "context": execution.context,
        "usage": {
            "input_tokens": execution.input_tokens,
            "output_tokens": execution.output_tokens,
            "estimated": execution.usage_estimated,
        },
        "cost": format(execution.cost.normalize(), "f"),  # "0", "0.00042": never "0E-8"
        "model": execution.model_used or None,
    }


def execution_json(execution: Execution, *, detail: bool = False) -> dict[str, Any]:
    """An execution record: the response shape plus timing, lineage and (detail) attempts."""
    body = execution_response(execution)
    body.update(
        {
            "agent_version": execution.agent_version,
            "requested_model": execution.requested_model,
            "input": execution.request_input,
            "started_at": _iso(execution.started_at),
            "completed_at": _iso(execution.completed_at),
            "cancel_requested_at": _iso(execution.cancel_requested_at),
            "duration_ms": execution.duration_ms,
            "retry_count": execution.retry_count,
            "parent_id": execution.parent_id,
        }
    )
    if detail:
        body.update(
            {
                "input_data": execution.input_data,
                "options": execution.options,
                "attempts": execution.attempts,
                "principal": execution.principal,
                "request_id": execution.request_id,
            }
        )
    return body


# ---- list queries ----


@dataclass(frozen=True)
class ExecutionQuery:
    status: list[str]
    resource_id: str | None
    context_filters: dict[str, str]
    agent_ref: str | None
    limit: int
    offset: int

    def page_of(self, total: int, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "executions": items,
            "total": total,
            "page": self.offset // self.limit + 1,
            "page_size": self.limit,
            "limit": self.limit,
            "offset": self.offset,
        }


def _int_param(params: QueryDict, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name}: must be an integer") from None
    if not low <= value <= high:
        raise ValidationFailed(f"{name}: must be between {low} and {high}")
    return value


def parse_execution_query(params: QueryDict, *, allow_agent: bool) -> ExecutionQuery:
    """``status`` (repeatable or comma separated), ``resource_id``, ``context.<dot.path>=v``
    (string values, all must match), ``agent_id`` (tenant-wide list only), ``limit``/``offset``."""
    statuses = [s for raw in params.getlist("status") for s in raw.split(",") if s]
    for status in statuses:
        if status not in ExecutionStatus.values:
            raise ValidationFailed(
                f"status: {status!r} is not one of {', '.join(ExecutionStatus.values)}"
            )
    filters: dict[str, str] = {}
    known = {"status", "resource_id", "limit", "offset", "page"} | (
        {"agent_id"} if allow_agent else set()
    )
    for name in params:
        if name.startswith("context."):
            path = name.removeprefix("context.")
            if not DOT_PATH_RE.match(path):
                raise ValidationFailed(f"{name}: not a dot path")
            # A key of a parsed query string has at least one value, so this is a str; the
            # stubs allow for the [] of a key whose value list was emptied by hand.
            filters[path] = cast(str, params[name])
        elif name not in known:
            raise ValidationFailed(f"{name}: unknown query parameter")
    limit = _int_param(params, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    offset = _int_param(params, "offset", 0, 0, 10_000_000)
    if "page" in params and "offset" not in params:
        offset = (_int_param(params, "page", 1, 1, 1_000_000) - 1) * limit
    return ExecutionQuery(
        status=statuses,
        resource_id=params.get("resource_id") or None,
        context_filters=filters,
        agent_ref=params.get("agent_id") or None if allow_agent else None,
        limit=limit,
        offset=offset,
    )
