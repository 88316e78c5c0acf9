"""MCP resources: executions as ``execution://{id}`` and ``execution://{id}/events?after=N``,
and subscriptions to them (2025-11-25 ``resources/subscribe`` through ``agents.mcp.sessions``,
2026-07-28 ``subscriptions/listen``)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY, ServerEvent, event_to_notification

from agents.api.serializers import execution_json
from agents.core import read_events
from agents.mcp.common import (
    PAGE_SIZE,
    RESOURCE_NOT_FOUND,
    SCHEME,
    SESSION_SCOPE_KEY,
    allow,
    caller,
    json_text,
    page_cursor,
    page_offset,
)
from agents.mcp.sessions import follow_resource, follow_tools, subscribe, unsubscribe
from agents.models import TERMINAL_STATUSES, Execution
from agents.selectors import execution_find, execution_last_seq, execution_page
from tenants.context import in_schema
from tenants.roles import Permission

MAX_LISTEN_RESOURCES = 50
MAX_EVENTS_PER_READ = 500


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
    await allow(principal, Permission.EXECUTIONS_READ, method="resources/list")
    resources, following = await in_schema(
        principal.schema_name, _recent, page_offset(params), PAGE_SIZE
    )
    return types.ListResourcesResult(resources=resources, next_cursor=page_cursor(following))


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
    await allow(principal, Permission.EXECUTIONS_READ, method="resources/read")
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
            types.TextResourceContents(uri=uri, mime_type="application/json", text=json_text(body))
        ]
    )


# ---- subscriptions (2025-11-25: a session's resources/subscribe) ----


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
    await allow(principal, Permission.EXECUTIONS_READ, method="resources/subscribe")
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
        await allow(principal, Permission.EXECUTIONS_READ, method="subscriptions/listen")
    if requested.tools_list_changed:
        await allow(principal, Permission.AGENTS_READ, method="subscriptions/listen")
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
