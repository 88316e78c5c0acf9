"""A tenant's tools as MCP sees them: the platform's fixed tools, then one tool per enabled
agent (named by its slug, its input schema as the tool's, its output schema when declared).

Sync functions: they run inside the caller's tenant schema (``tenants.context.in_schema``).
Arguments of an agent tool become an ordinary canonical run body (:func:`agent_tool_body`),
which the execution core validates like any other.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import mcp_types as types

from agents.models import Agent
from config.errors import ValidationFailed
from tenants.roles import Permission

# MCP tool names: 1-128 characters of [A-Za-z0-9_.-]. Slugs already are; an agent whose slug
# is one of the fixed tools' names is listed as ``agent.<slug>``.
AGENT_PREFIX = "agent."
# Tool arguments become context paths (``mcp.arguments.<name>``): names must be path segments.
_ARGUMENT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"message": {"type": "string", "description": "What to ask the agent"}},
    "required": ["message"],
}


@dataclass(frozen=True)
class FixedTool:
    name: str
    title: str
    description: str
    input_schema: dict[str, Any]
    permission: Permission
    read_only: bool


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


_ID = {"type": "string", "minLength": 1, "maxLength": 128}
_DATA = {"type": "object", "description": "JSON object merged into the resource's data"}

FIXED_TOOLS: tuple[FixedTool, ...] = (
    FixedTool(
        "list_agents",
        "List agents",
        "The tenant's agents: id, slug, name, model, whether enabled, input and output schemas.",
        _object({}, []),
        Permission.AGENTS_READ,
        True,
    ),
    FixedTool(
        "execute_agent",
        "Run an agent",
        "Run any agent of the tenant by id or slug and return its output. The run is an "
        "ordinary execution (see its execution:// resource).",
        _object(
            {
                "agent_id": {**_ID, "description": "The agent's id or slug"},
                "input_data": {
                    "type": "object",
                    "description": "The agent's input: 'message' and the fields of its schema",
                },
                "model_override": {"type": "string", "minLength": 1, "maxLength": 200},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "max_tokens": {"type": "integer", "minimum": 1},
            },
            ["agent_id", "input_data"],
        ),
        Permission.EXECUTIONS_RUN,
        False,
    ),
    FixedTool(
        "create_resource",
        "Create a workflow resource",
        "Create a resource in a workflow's initial marking; its state agents are queued.",
        _object(
            {
                "workflow_id": {**_ID, "description": "The workflow's id or slug"},
                "data": _DATA,
                "metadata": {"type": "object"},
            },
            ["workflow_id"],
        ),
        Permission.WORKFLOWS_RUN,
        False,
    ),
    FixedTool(
        "fire_activity",
        "Fire a workflow activity",
        "Fire an activity on a resource. Refused with the reason when the marking or a rule "
        "does not allow it; waits for the activity's agents when it has some.",
        _object(
            {"resource_id": _ID, "activity_id": _ID, "data": _DATA},
            ["resource_id", "activity_id"],
        ),
        Permission.WORKFLOWS_RUN,
        False,
    ),
    FixedTool(
        "get_resource",
        "Read a workflow resource",
        "A resource: its marking, data, history, agent runs and pending firings.",
        _object({"resource_id": _ID}, ["resource_id"]),
        Permission.WORKFLOWS_READ,
        True,
    ),
)
FIXED_BY_NAME = {tool.name: tool for tool in FIXED_TOOLS}


def tool_permission(name: str) -> Permission:
    """What calling the tool ``name`` needs (any agent tool: running executions)."""
    fixed = FIXED_BY_NAME.get(name)
    return fixed.permission if fixed is not None else Permission.EXECUTIONS_RUN


def agent_tool_name(agent: Agent) -> str:
    return f"{AGENT_PREFIX}{agent.slug}" if agent.slug in FIXED_BY_NAME else agent.slug


def _input_schema(agent: Agent) -> dict[str, Any]:
    schema = agent.input_schema
    if not isinstance(schema, Mapping):
        return MESSAGE_SCHEMA
    # The agent's schema validates an object (its mapped input); MCP needs that said.
    return {**schema, "type": "object"}


def _fixed(tool: FixedTool) -> types.Tool:
    return types.Tool(
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=tool.input_schema,
        annotations=types.ToolAnnotations(
            read_only_hint=tool.read_only,
            destructive_hint=False,
            open_world_hint=tool.name == "execute_agent",
        ),
    )


def agent_tool(agent: Agent) -> types.Tool:
    output = agent.output_schema
    return types.Tool(
        name=agent_tool_name(agent),
        title=agent.name,
        description=(agent.description or f"Run the agent {agent.name!r}.")[:2000],
        input_schema=_input_schema(agent),
        output_schema=output if _object_schema(output) else None,
        annotations=types.ToolAnnotations(
            read_only_hint=False, destructive_hint=False, open_world_hint=True
        ),
    )


def _object_schema(schema: Any) -> bool:
    # structuredContent is a JSON object: only an object output schema can describe it.
    return isinstance(schema, Mapping) and schema.get("type") == "object"


def declares_output(agent: Agent) -> bool:
    return _object_schema(agent.output_schema)


def tools_page(offset: int, limit: int) -> tuple[list[types.Tool], int | None]:
    """Tools ``offset .. offset+limit`` in a stable order (fixed tools, then agents by slug),
    and the next offset (None at the end)."""
    fixed = [_fixed(tool) for tool in FIXED_TOOLS][offset : offset + limit]
    start = max(offset - len(FIXED_TOOLS), 0)
    wanted = limit - len(fixed)
    # One more than wanted: whether a next page exists.
    agents = list(Agent.objects.filter(enabled=True).order_by("slug")[start : start + wanted + 1])
    page = fixed + [agent_tool(agent) for agent in agents[:wanted]]
    return page, (offset + limit if len(agents) > wanted else None)


def agent_for_tool(name: str) -> Agent | None:
    """The enabled agent a tool name stands for (its slug, or ``agent.<slug>``)."""
    slug = name.removeprefix(AGENT_PREFIX) if name.startswith(AGENT_PREFIX) else name
    if slug != name and slug not in FIXED_BY_NAME:
        return None  # only a colliding slug is listed with the prefix
    return Agent.objects.filter(slug=slug, enabled=True).first()


def agents_fingerprint() -> str:
    """Changes whenever an operator adds, edits, enables, disables or deletes an agent."""
    rows = Agent.objects.filter(enabled=True).order_by("slug").values_list("slug", "version")
    return hashlib.sha256(repr(list(rows)).encode()).hexdigest()


def agent_summaries() -> list[dict[str, Any]]:
    return [
        {
            "id": agent.id,
            "slug": agent.slug,
            "tool": agent_tool_name(agent) if agent.enabled else None,
            "name": agent.name,
            "description": agent.description,
            "model": agent.model,
            "enabled": agent.enabled,
            "input_schema": agent.input_schema,
            "output_schema": agent.output_schema,
        }
        for agent in Agent.objects.order_by("slug")
    ]


def agent_tool_body(arguments: Mapping[str, Any], *, tool: str) -> dict[str, Any]:
    """The canonical run body for an agent tool's arguments.

    ``message`` is the run's message; every other argument is put in the context under
    ``mcp.arguments`` and mapped to the input key of the same name, over the agent's own input
    mapping (so a schema field the caller gives wins over a mapped context value, as on REST).
    """
    message = arguments.get("message")
    rest = {key: value for key, value in arguments.items() if key != "message"}
    for key in rest:
        if not _ARGUMENT_NAME.match(str(key)):
            raise ValidationFailed(
                f"arguments.{str(key)[:64]}: argument names are letters, digits and '_'",
                details={"arguments": ["bad argument name"]},
            )
    body: dict[str, Any] = {
        "context": {"mcp": {"tool": tool, "arguments": rest}},
        "input": {} if message is None else {"message": message},
    }
    if rest:
        body["execution_config"] = {
            "input_mapping": {key: f"mcp.arguments.{key}" for key in rest},
        }
    return body


def merged_input_mapping(agent: Agent, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the agent's own input mapping kept under the arguments' entries."""
    config = body.get("execution_config")
    if not config or not agent.input_mapping:
        return body
    mapping = {**agent.input_mapping, **config["input_mapping"]}
    return {**body, "execution_config": {**config, "input_mapping": mapping}}
