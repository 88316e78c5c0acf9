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

import asyncio
import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import mcp_types as types
from django.db import connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import (
    SUBSCRIPTION_ID_META_KEY,
    ServerEvent,
    event_to_notification,
)

from agents.api.serializers import agent_json, execution_json, execution_response
from agents.core import (
    DatabaseUnavailable,
    cancel_execution,
    read_events,
    start_run,
)
from agents.core.hub import CANCEL_CHANNEL, get_hub
from agents.mcp import catalog
from agents.mcp.sessions import follow_resource, follow_tools, subscribe, unsubscribe
from agents.models import TERMINAL_STATUSES, Agent, Execution, ExecutionStatus
from agents.selectors import execution_find, execution_last_seq, execution_page
from agents.services.agents import agent_get
from config.errors import DomainError, NotFound, PermissionRefused
from tenants.access import authorize_async
from tenants.context import in_schema
from tenants.principals import Principal
from tenants.roles import Permission
from workflow_bridge.api.resources import resource_detail_json
from workflow_bridge.selectors import firing_execution_ids, resource_get, workflow_get
from workflow_bridge.services import activity_fire, compiled_of, resource_create

# Set by agents.mcp.app on the ASGI scope of every authenticated /mcp request.
PRINCIPAL_SCOPE_KEY = "cb_mcp_principal"
REQUEST_ID_SCOPE_KEY = "cb_mcp_request_id"

PAGE_SIZE = 50
# MCP's "resource not found" (2025-11-25); -32602 for anything else the caller got wrong.
RESOURCE_NOT_FOUND = -32002
SCHEME = "execution"
MAX_LISTEN_RESOURCES = 50
MAX_EVENTS_PER_READ = 500


# ---- the caller ----


def caller(ctx: ServerRequestContext[Any, Any]) -> tuple[Principal, str]:
    """The principal and request id ``agents.mcp.app`` fixed for this HTTP request. Fails
    closed: a handler reached without them refuses."""
    scope = getattr(ctx.request, "scope", None) or {}
    principal = scope.get(PRINCIPAL_SCOPE_KEY)
    if not isinstance(principal, Principal):
        raise MCPError(types.INVALID_REQUEST, "Not authenticated.")
    return principal, str(scope.get(REQUEST_ID_SCOPE_KEY) or "")


async def _allow(principal: Principal, permission: Permission, **details: Any) -> None:
    try:
        await authorize_async(principal, permission, transport="mcp", **details)
    except PermissionRefused as refused:
        raise MCPError(types.INVALID_REQUEST, refused.message) from None


def _offset(params: types.PaginatedRequestParams | None) -> int:
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


def _cursor(offset: int | None) -> str | None:
    if offset is None:
        return None
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _text(value: Any) -> types.TextContent:
    return types.TextContent(
        type="text", text=value if isinstance(value, str) else _json_text(value)
    )


def _error_result(message: str, **structured: Any) -> types.CallToolResult:
    return types.CallToolResult(
        content=[_text(message)], is_error=True, structured_content=structured or None
    )


# ---- tools ----


async def list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    principal, _ = caller(ctx)
    await _allow(principal, Permission.AGENTS_READ, method="tools/list")
    tools, following = await in_schema(
        principal.schema_name, catalog.tools_page, _offset(params), PAGE_SIZE
    )
    return types.ListToolsResult(tools=tools, next_cursor=_cursor(following))


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
            content=[_text(output if output is not None else ""), link],
            structured_content=structured,
        )
    if execution.status == ExecutionStatus.CANCELLED:
        message = "The execution was cancelled."
    else:
        message = f"The agent failed ({execution.error_code or 'error'}): {execution.error_message}"
    # An agent with an output schema: structuredContent must match it, so none on failure.
    return types.CallToolResult(
        content=[_text(message), link],
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
        return _error_result(refused.message, code=refused.code, details=refused.details)
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
        return _error_result(
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
        return _error_result(refused.message, code=refused.code, details=refused.details)
    return types.CallToolResult(content=[_text(result)], structured_content=result)


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
        await _allow(principal, Permission.EXECUTIONS_RUN, method="tools/call", tool=name)
        try:
            body = catalog.agent_tool_body(arguments, tool=name)
        except DomainError as refused:
            return _error_result(refused.message, code=refused.code)
        return await _run(ctx, principal, request_id, agent, body)
    _unknown_arguments(arguments, fixed)
    await _allow(principal, fixed.permission, method="tools/call", tool=name)
    if name == "list_agents":
        agents = await in_schema(schema, catalog.agent_summaries)
        listed = {"agents": agents}
        return types.CallToolResult(content=[_text(listed)], structured_content=listed)
    if name == "execute_agent":
        agent_id = _string_argument(arguments, "agent_id", required=True)
        try:
            agent = await in_schema(schema, agent_get, str(agent_id))
            body = _execute_agent_body(arguments)
        except DomainError as refused:
            return _error_result(refused.message, code=refused.code)
        return await _run(ctx, principal, request_id, agent, body)
    return await _workflow_tool(principal, name, arguments)


# ---- resources ----


def parse_uri(uri: str) -> tuple[str, bool, int]:
    """(execution id, whether the events resource, after) of an ``execution://`` URI."""
    parts = urlsplit(uri)
    if parts.scheme != SCHEME or not parts.netloc or parts.path not in ("", "/", "/events"):
        raise MCPError(RESOURCE_NOT_FOUND, "Resource not found", data={"uri": uri})
    after = 0
    if parts.query:
        values = parse_qs(parts.query).get("after", ["0"])
        try:
            after = max(int(values[0]), 0)
        except ValueError:
            raise MCPError(types.INVALID_PARAMS, "after: must be an integer") from None
    return parts.netloc, parts.path == "/events", after


def _resource(execution: Execution) -> types.Resource:
    return types.Resource(
        uri=f"{SCHEME}://{execution.id}",
        name=execution.id,
        title=f"{execution.agent.slug}: {execution.status}",
        description=f"Execution of {execution.agent.slug}, {execution.status}",
        mime_type="application/json",
    )


def _recent(offset: int, limit: int) -> tuple[list[types.Resource], int | None]:
    rows = execution_page(offset, limit + 1)  # one more: whether a next page exists
    return [_resource(row) for row in rows[:limit]], (offset + limit if len(rows) > limit else None)


async def list_resources(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListResourcesResult:
    principal, _ = caller(ctx)
    await _allow(principal, Permission.EXECUTIONS_READ, method="resources/list")
    resources, following = await in_schema(
        principal.schema_name, _recent, _offset(params), PAGE_SIZE
    )
    return types.ListResourcesResult(resources=resources, next_cursor=_cursor(following))


async def list_resource_templates(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    caller(ctx)
    return types.ListResourceTemplatesResult(
        resource_templates=[
            types.ResourceTemplate(
                uri_template=f"{SCHEME}://{{execution_id}}",
                name="execution",
                title="Execution",
                description="An execution: status, output, error, usage, cost, timing",
                mime_type="application/json",
            ),
            types.ResourceTemplate(
                uri_template=f"{SCHEME}://{{execution_id}}/events{{?after}}",
                name="execution_events",
                title="Execution events",
                description="The execution's stored events after a sequence number",
                mime_type="application/json",
            ),
        ]
    )


async def read_resource(
    ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
) -> types.ReadResourceResult:
    principal, _ = caller(ctx)
    uri = str(params.uri)
    execution_id, events, after = parse_uri(uri)
    await _allow(principal, Permission.EXECUTIONS_READ, method="resources/read")
    schema = principal.schema_name
    # Ids are guessable: the lookup is in the caller's schema only, and another tenant's id
    # reads exactly like one that never existed.
    execution = await in_schema(schema, execution_find, execution_id)
    if execution is None:
        raise MCPError(RESOURCE_NOT_FOUND, "Resource not found", data={"uri": uri})
    if events:
        stored = (await read_events(schema, execution_id, after))[:MAX_EVENTS_PER_READ]
        body: dict[str, Any] = {
            "execution_id": execution_id,
            "events": [{"seq": e.seq, "type": e.type, "data": e.data} for e in stored],
            "next_after": stored[-1].seq if stored else after,
            "terminal": execution.status in TERMINAL_STATUSES,
        }
    else:
        body = execution_json(execution)
    return types.ReadResourceResult(
        contents=[
            types.TextResourceContents(uri=uri, mime_type="application/json", text=_json_text(body))
        ]
    )


# ---- subscriptions (2025-11-25: a session's resources/subscribe) ----

SESSION_SCOPE_KEY = "cb_mcp_session"


def _session(ctx: ServerRequestContext[Any, Any]) -> str:
    scope = getattr(ctx.request, "scope", None) or {}
    session = scope.get(SESSION_SCOPE_KEY)
    if not isinstance(session, str):
        raise MCPError(types.INVALID_REQUEST, "resources/subscribe needs the session of initialize")
    return session


async def subscribe_resource(
    ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams
) -> types.EmptyResult:
    principal, _ = caller(ctx)
    session = _session(ctx)
    uri = str(params.uri)
    execution_id, _, _ = parse_uri(uri)
    await _allow(principal, Permission.EXECUTIONS_READ, method="resources/subscribe")
    if await in_schema(principal.schema_name, execution_find, execution_id) is None:
        raise MCPError(RESOURCE_NOT_FOUND, "Resource not found", data={"uri": uri})
    if not await in_schema(principal.schema_name, subscribe, principal.schema_name, session, uri):
        raise MCPError(types.INVALID_PARAMS, "too many subscriptions in this session")
    return types.EmptyResult()


async def unsubscribe_resource(
    ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
) -> types.EmptyResult:
    principal, _ = caller(ctx)
    session = _session(ctx)
    await in_schema(
        principal.schema_name, unsubscribe, principal.schema_name, session, str(params.uri)
    )
    return types.EmptyResult()


# ---- subscriptions (2026-07-28) ----


async def subscriptions_listen(
    ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
) -> types.SubscriptionsListenResult:
    """One listen stream: acknowledge what is honored, then forward the tenant's events until
    the client closes the stream (which cancels this handler)."""
    principal, _ = caller(ctx)
    subscription_id = ctx.request_id
    if subscription_id is None:
        raise MCPError(types.INVALID_REQUEST, "subscriptions/listen requires a request id")
    requested = params.notifications
    uris = list(requested.resource_subscriptions or [])
    if len(uris) > MAX_LISTEN_RESOURCES:
        raise MCPError(types.INVALID_PARAMS, f"at most {MAX_LISTEN_RESOURCES} resources per stream")
    schema = principal.schema_name
    if uris:
        await _allow(principal, Permission.EXECUTIONS_READ, method="subscriptions/listen")
    if requested.tools_list_changed:
        await _allow(principal, Permission.AGENTS_READ, method="subscriptions/listen")
    out: asyncio.Queue[ServerEvent] = asyncio.Queue(maxsize=0)
    followers: list[asyncio.Task[None]] = []
    honored_uris: list[str] = []
    try:
        for uri in uris:
            execution_id, events, _ = parse_uri(uri)
            last = await in_schema(schema, execution_last_seq, execution_id)
            if last is None:
                continue  # honored like any unknown URI elsewhere: it never fires
            honored_uris.append(uri)
            followers.append(
                asyncio.create_task(follow_resource(schema, uri, execution_id, events, last, out))
            )
        if requested.tools_list_changed:
            followers.append(asyncio.create_task(follow_tools(schema, out)))
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        honored = types.SubscriptionFilter(
            tools_list_changed=True if requested.tools_list_changed else None,
            resource_subscriptions=honored_uris or None,
        )
        await ctx.session.send_notification(
            types.SubscriptionsAcknowledgedNotification(
                params=types.SubscriptionsAcknowledgedNotificationParams(
                    notifications=honored, _meta=meta
                )
            ),
            related_request_id=subscription_id,
        )
        while True:
            event = await out.get()
            await ctx.session.send_notification(
                event_to_notification(event, meta), related_request_id=subscription_id
            )
    finally:
        for task in followers:
            task.cancel()


# ---- prompts ----

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
        await _allow(principal, Permission.AGENTS_READ, method="prompts/get")
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
        messages=[types.PromptMessage(role="user", content=_text(text))],
    )


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
