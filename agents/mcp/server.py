"""The MCP handlers: a thin transport over the execution core and the access module.

Every handler reads the caller fixed by ``agents.mcp.app`` (the principal in the request's
ASGI scope; nothing is trusted from the MCP messages), works in that principal's tenant schema
explicitly (``in_schema``: never the ambient one), checks the permission through
``tenants.access`` (audited denials), and starts or reads runs through ``agents.core``: a tool
call is an ordinary execution, visible in the REST API and its streams.

- Tools (``agents.mcp.catalog``): ``list_agents``, ``execute_agent``, the workflow tools and
  one tool per enabled agent. A call follows the run's stored events: chunks go out as
  ``notifications/progress`` when the client sent a progress token; the result is the text plus
  a link to the execution's resource, and ``structuredContent`` (the agent's output when it
  declares an object output schema, the execution otherwise). Agent failures, refusals of the
  input and cancelled runs are ``isError`` results, not protocol errors. A client that cancels
  the request (or, on 2026-07-28, closes its stream) cancels the execution.
- Resources: ``execution://{id}`` (the execution: status, output, usage) and
  ``execution://{id}/events?after=N`` (its stored events); recent executions listed, paginated.
- Subscriptions: 2025-11-25 ``resources/subscribe`` stores the subscription for the session
  (``agents.mcp.sessions``; notified on the session's stream), and 2026-07-28
  ``subscriptions/listen`` streams ``notifications/resources/updated``
  when a subscribed execution changes status (or, for its events resource, on every event),
  and ``notifications/tools/list_changed`` when the tenant's agents change (a database trigger
  NOTIFYs every process). Followers read the stored logs, so a listen stream on one process
  sees runs executing on another.
- Prompts: ``agent_configuration`` and ``workflow_template``, as the original had.
"""

from __future__ import annotations

from typing import Any

from mcp.server.lowlevel.server import NotificationOptions, Server

from agents.mcp.common import PRINCIPAL_SCOPE_KEY, REQUEST_ID_SCOPE_KEY, SESSION_SCOPE_KEY
from agents.mcp.prompts import get_prompt, list_prompts
from agents.mcp.resources import (
    list_resource_templates,
    list_resources,
    parse_uri,
    read_resource,
    subscribe_resource,
    subscriptions_listen,
    unsubscribe_resource,
)
from agents.mcp.tools import call_tool, cancel_call, list_tools

__all__ = [
    "PRINCIPAL_SCOPE_KEY",
    "REQUEST_ID_SCOPE_KEY",
    "SESSION_SCOPE_KEY",
    "build_server",
    "cancel_call",
    "parse_uri",
]


class _Server(Server[Any]):
    def create_initialization_options(
        self, notification_options: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        # 2025-11-25 clients get tools/list_changed on their session's stream (GET /mcp).
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True), *args, **kwargs
        )


def build_server() -> Server[Any]:
    """The low-level server with every handler (one per process; stateless: no per-client
    state lives in it)."""
    return _Server(
        "circuit-breaker-agents",
        version="0.1.0",
        title="Circuit Breaker Agents",
        instructions=(
            "Each tool but the fixed ones runs one of your tenant's agents; every call is an "
            "execution you can read as execution://{execution_id}."
        ),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe_resource,
        on_unsubscribe_resource=unsubscribe_resource,
        on_subscriptions_listen=subscriptions_listen,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
    )
