"""MCP prompts, as the original had: ``agent_configuration`` and ``workflow_template``."""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from agents.api.serializers import agent_json
from agents.mcp.common import allow, caller, text_content
from agents.services.agents import agent_get
from config.errors import NotFound
from tenants.context import in_schema
from tenants.roles import Permission

AGENT_CONFIGURATION = "agent_configuration"
WORKFLOW_TEMPLATE = "workflow_template"


async def list_prompts(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListPromptsResult:
    caller(ctx)
    return types.ListPromptsResult(
        prompts=[
            types.Prompt(
                name=AGENT_CONFIGURATION,
                title="Agent configuration",
                description="An agent's configuration, to review or improve it",
                arguments=[
                    types.PromptArgument(
                        name="agent_id", description="The agent's id or slug", required=True
                    )
                ],
            ),
            types.Prompt(
                name=WORKFLOW_TEMPLATE,
                title="Workflow template",
                description="Draft a workflow definition (states, activities, rules)",
                arguments=[
                    types.PromptArgument(
                        name="description",
                        description="What the workflow is for",
                        required=True,
                    )
                ],
            ),
        ]
    )


WORKFLOW_GUIDE = """Design a workflow for the Circuit Breaker Agents platform.

What it is for: {description}

Answer with one JSON object in this format (a state machine; use "places"/"transitions"
instead of "states"/"activities" when steps run in parallel):

{{"format": "circuit-breaker/workflow@1", "slug": "short-name", "name": "Readable name",
  "states": ["draft", "review", "done"], "initial_state": "draft",
  "activities": [{{"id": "submit", "from_states": ["draft"], "to_state": "review",
                  "rules": ["has-total"]}}],
  "rules": [{{"id": "has-total", "condition": {{"type": "FieldExists", "field": "data.total"}}}}]}}

Name each activity for what a person or an agent does; give every activity that needs data a
rule that checks it."""


def _agent_prompt(ref: str) -> str:
    agent = agent_get(ref)
    config = agent_json(agent)
    return (
        f"This is the configuration of the agent {agent.name!r} (version {agent.version}). "
        "Review it: is the system prompt clear, do the schemas match what it is asked to do, "
        "are the retry and fallback settings sensible?\n\n"
        + json.dumps(config, indent=2, default=str)
    )


async def get_prompt(
    ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
) -> types.GetPromptResult:
    principal, _ = caller(ctx)
    arguments = params.arguments or {}
    if params.name == AGENT_CONFIGURATION:
        ref = arguments.get("agent_id")
        if not ref:
            raise MCPError(types.INVALID_PARAMS, "agent_id: required")
        await allow(principal, Permission.AGENTS_READ, method="prompts/get")
        try:
            text = await in_schema(principal.schema_name, _agent_prompt, str(ref))
        except NotFound:
            raise MCPError(types.INVALID_PARAMS, f"agent_id: no agent {str(ref)[:100]!r}") from None
        description = "The agent's configuration"
    elif params.name == WORKFLOW_TEMPLATE:
        purpose = arguments.get("description")
        if not purpose:
            raise MCPError(types.INVALID_PARAMS, "description: required")
        text = WORKFLOW_GUIDE.format(description=str(purpose)[:4000])
        description = "A workflow definition to draft"
    else:
        raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {params.name[:128]}")
    return types.GetPromptResult(
        description=description,
        messages=[types.PromptMessage(role="user", content=text_content(text))],
    )
