"""MCP tools: the tenant's agents and the fixed tools (``agents.mcp.catalog``), each call an
ordinary execution through ``agents.core``; progress while it streams; cancellation from the
client (a closed stream, or a 2025-11-25 ``notifications/cancelled`` in any process)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from typing import Any

import mcp_types as types
from django.db import connection
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from agents.api.serializers import execution_response
from agents.core import DatabaseUnavailable, cancel_execution, start_run
from agents.core.hub import CANCEL_CHANNEL, get_hub
from agents.mcp import catalog
from agents.mcp.common import (
    PAGE_SIZE,
    SCHEME,
    allow,
    caller,
    error_result,
    page_cursor,
    page_offset,
    text_content,
)
from agents.models import Agent, Execution, ExecutionStatus
from agents.selectors import execution_find
from agents.services.agents import agent_get
from config.errors import DomainError, NotFound
from tenants.context import in_schema
from tenants.principals import Principal
from tenants.roles import Permission
from workflow_bridge.api.resources import resource_detail_json
from workflow_bridge.selectors import firing_execution_ids, resource_get, workflow_get
from workflow_bridge.services import activity_fire, compiled_of, resource_create


async def list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    principal, _ = caller(ctx)
    await allow(principal, Permission.AGENTS_READ, method="tools/list")
    tools, following = await in_schema(
        principal.schema_name, catalog.tools_page, page_offset(params), PAGE_SIZE
    )
    return types.ListToolsResult(tools=tools, next_cursor=page_cursor(following))


def _link(execution: Execution) -> types.ResourceLink:
    return types.ResourceLink(
        type="resource_link",
        uri=f"{SCHEME}://{execution.id}",
        name=execution.id,
        title=f"Execution {execution.id}",
        mime_type="application/json",
    )


def _run_result(execution: Execution, *, structured_output: bool) -> types.CallToolResult:
    response = execution_response(execution)
    link = _link(execution)
    if execution.status == ExecutionStatus.COMPLETED:
        output = execution.output
        structured = output if structured_output and isinstance(output, dict) else response
        return types.CallToolResult(
            content=[text_content(output if output is not None else ""), link],
            structured_content=structured,
        )
    if execution.status == ExecutionStatus.CANCELLED:
        message = "The execution was cancelled."
    else:
        message = f"The agent failed ({execution.error_code or 'error'}): {execution.error_message}"
    # An agent with an output schema: structuredContent must match it, so none on failure.
    return types.CallToolResult(
        content=[text_content(message), link],
        is_error=True,
        structured_content=None if structured_output else response,
    )


def _progress_token(ctx: ServerRequestContext[Any, Any]) -> str | int | None:
    # RequestParamsMeta is a TypedDict (snake_case keys once validated).
    meta: Mapping[str, Any] = ctx.meta or {}
    token = meta.get("progress_token")
    return token if isinstance(token, str | int) and not isinstance(token, bool) else None


# ---- cancelling a call (2025-11-25 notifications/cancelled) ----

# Cancels in flight, kept until they are done (the loop holds tasks weakly).
_CANCELS: set[asyncio.Task[Any]] = set()


def call_key(principal: Principal, rpc_id: Any) -> str:
    """Names one in-flight tools/call of one credential, across processes: a stateless server
    has no session, so a cancel notification (a separate POST, maybe to another process) finds
    its call by the credential and the JSON-RPC id."""
    digest = hashlib.sha256(f"{principal.audit_actor}\x00{rpc_id!r}".encode()).hexdigest()
    return f"mcp-{digest[:32]}"


def _cancel_run(execution_id: str, actor: str, schema_name: str) -> None:
    execution = execution_find(execution_id)
    if execution is not None:
        cancel_execution(schema_name=schema_name, execution=execution, actor=actor)


def _notify_cancel(payload: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CANCEL_CHANNEL, payload])


async def cancel_call(principal: Principal, rpc_id: Any) -> None:
    """The client gave up on its call ``rpc_id``: cancel the execution it started, here or in
    whichever process runs it (the event hub's cancel channel reaches them all)."""
    schema, key = principal.schema_name, call_key(principal, rpc_id)
    if not get_hub().cancel_local(schema, key):
        await in_schema(schema, _notify_cancel, f"{schema}:{key}:0")


def _cancel_on_request(principal: Principal, execution_id: str) -> Any:
    def cancel() -> None:
        # Through the core, as REST's cancel: audited, child executions included.
        task = asyncio.ensure_future(
            in_schema(
                principal.schema_name,
                _cancel_run,
                execution_id,
                principal.audit_actor,
                principal.schema_name,
            )
        )
        _CANCELS.add(task)
        task.add_done_callback(_CANCELS.discard)

    return cancel


async def _run(
    ctx: ServerRequestContext[Any, Any],
    principal: Principal,
    request_id: str,
    agent: Agent,
    body: dict[str, Any],
) -> types.CallToolResult:
    try:
        handle = await start_run(
            principal=principal,
            agent_ref=agent.id,
            body=catalog.merged_input_mapping(agent, body),
            mode="streamed",
            request_id=request_id,
        )
    except DomainError as refused:
        # The input was refused before anything ran: the model calling the tool can fix it.
        return error_result(refused.message, code=refused.code, details=refused.details)
    token = _progress_token(ctx)
    progress = 0
    ended = False
    cancel = _cancel_on_request(principal, handle.execution_id)
    cancellable = get_hub().running(
        principal.schema_name, call_key(principal, ctx.request_id), cancel
    )
    try:
        with cancellable:
            async for event in handle.events():
                if event is None:
                    continue
                if event.type == "chunk" and token is not None:
                    progress += 1
                    # Request-scoped: on this request's own stream (stateless: no other).
                    await ctx.session.send_progress_notification(
                        token,
                        progress,
                        message=str(event.data.get("text") or ""),
                        related_request_id=str(ctx.request_id),
                    )
                if event.terminal:
                    break
        ended = True
    except DatabaseUnavailable:
        ended = True  # not the client's doing: leave the run to finish
        return error_result(
            "The database is unavailable; the execution may still finish: read "
            f"{SCHEME}://{handle.execution_id} later.",
            code="database_unavailable",
            execution_id=handle.execution_id,
        )
    finally:
        # Reached early only when the client cancelled the request or went away.
        if not ended:
            cancel()
    execution = await handle.result()
    return _run_result(execution, structured_output=catalog.declares_output(agent))


def _string_argument(arguments: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = arguments.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise MCPError(types.INVALID_PARAMS, f"{name}: must be a non-empty string")
    return value


def _object_argument(arguments: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = arguments.get(name)
    if value is not None and not isinstance(value, dict):
        raise MCPError(types.INVALID_PARAMS, f"{name}: must be a JSON object")
    return value


def _unknown_arguments(arguments: Mapping[str, Any], tool: catalog.FixedTool) -> None:
    known = set(tool.input_schema["properties"])
    unknown = sorted(str(key) for key in arguments if key not in known)
    if unknown:
        raise MCPError(types.INVALID_PARAMS, f"{unknown[0][:64]}: unknown argument")


def _execute_agent_body(arguments: Mapping[str, Any]) -> dict[str, Any]:
    input_data = _object_argument(arguments, "input_data")
    if input_data is None:
        raise MCPError(types.INVALID_PARAMS, "input_data: required (a JSON object)")
    body = catalog.agent_tool_body(input_data, tool="execute_agent")
    parameters = {
        name: arguments[name] for name in ("temperature", "max_tokens") if name in arguments
    }
    if parameters:
        body["input"] = {**body["input"], "parameters": parameters}
    model = _string_argument(arguments, "model_override", required=False)
    if model is not None:
        body["execution_config"] = {**body.get("execution_config", {}), "model": model}
    return body


def _fire(
    resource_id: str, activity_id: str, data: dict[str, Any] | None, actor: str, schema: str
) -> dict[str, Any]:
    resource = resource_get(resource_id)
    if activity_id not in compiled_of(resource.workflow).activities:
        raise NotFound(f"Activity {activity_id!r} not found in this workflow.")
    fired = activity_fire(
        resource=resource, activity_id=activity_id, data=data, actor=actor, schema_name=schema
    )
    if fired.firing is not None:
        return {
            "status": "waiting_for_agents",
            "resource_id": resource.id,
            "firing_id": fired.firing.pk,
            "execution_ids": firing_execution_ids(fired.firing),
        }
    return {"status": "fired", "resource": resource_detail_json(resource_get(resource.id))}


def _create(
    workflow_id: str,
    data: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
    actor: str,
    schema: str,
) -> dict[str, Any]:
    resource = resource_create(
        workflow=workflow_get(workflow_id),
        data=data,
        metadata=metadata,
        actor=actor,
        schema_name=schema,
    )
    return resource_detail_json(resource_get(resource.id))


async def _workflow_tool(
    principal: Principal, name: str, arguments: Mapping[str, Any]
) -> types.CallToolResult:
    schema, actor = principal.schema_name, principal.audit_actor
    try:
        if name == "create_resource":
            workflow_id = _string_argument(arguments, "workflow_id", required=True)
            result = await in_schema(
                schema,
                _create,
                str(workflow_id),
                _object_argument(arguments, "data"),
                _object_argument(arguments, "metadata"),
                actor,
                schema,
            )
        elif name == "fire_activity":
            resource_id = _string_argument(arguments, "resource_id", required=True)
            activity_id = _string_argument(arguments, "activity_id", required=True)
            result = await in_schema(
                schema,
                _fire,
                str(resource_id),
                str(activity_id),
                _object_argument(arguments, "data"),
                actor,
                schema,
            )
        else:
            resource_id = _string_argument(arguments, "resource_id", required=True)
            result = await in_schema(
                schema, lambda: resource_detail_json(resource_get(str(resource_id)))
            )
    except DomainError as refused:
        return error_result(refused.message, code=refused.code, details=refused.details)
    return types.CallToolResult(content=[text_content(result)], structured_content=result)


async def call_tool(
    ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    principal, request_id = caller(ctx)
    name = params.name
    arguments = params.arguments or {}
    schema = principal.schema_name
    fixed = catalog.FIXED_BY_NAME.get(name)
    if fixed is None:
        agent = await in_schema(schema, catalog.agent_for_tool, name)
        if agent is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {name[:128]}")
        await allow(principal, Permission.EXECUTIONS_RUN, method="tools/call", tool=name)
        try:
            body = catalog.agent_tool_body(arguments, tool=name)
        except DomainError as refused:
            return error_result(refused.message, code=refused.code)
        return await _run(ctx, principal, request_id, agent, body)
    _unknown_arguments(arguments, fixed)
    await allow(principal, fixed.permission, method="tools/call", tool=name)
    if name == "list_agents":
        agents = await in_schema(schema, catalog.agent_summaries)
        listed = {"agents": agents}
        return types.CallToolResult(content=[text_content(listed)], structured_content=listed)
    if name == "execute_agent":
        agent_id = _string_argument(arguments, "agent_id", required=True)
        try:
            agent = await in_schema(schema, agent_get, str(agent_id))
            body = _execute_agent_body(arguments)
        except DomainError as refused:
            return error_result(refused.message, code=refused.code)
        return await _run(ctx, principal, request_id, agent, body)
    return await _workflow_tool(principal, name, arguments)
