"""2025-11-25 sessions without server state: what lets a stateless server send that protocol's
notifications (``resources/updated`` after ``resources/subscribe``, ``tools/list_changed``).

- The session id (``Mcp-Session-Id``, given with the ``initialize`` answer) is signed for the
  credential that opened it: any process verifies it, and no other credential can use it.
- Subscriptions are rows of the tenant's schema (``McpSubscription``); a change NOTIFYs the
  session's log id, so the session's notification stream wakes wherever it runs.
- The notification stream (``GET /mcp`` with the session id) follows the stored event logs of
  the subscribed executions and the tenant's agents, like ``subscriptions/listen`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import connection
from django.utils import timezone
from mcp.shared.subscriptions import ResourceUpdated, ServerEvent, ToolsListChanged

from agents.core import DatabaseUnavailable, follow_events
from agents.core.hub import AGENTS_LOG, MCP_SESSIONS_CHANNEL, get_hub
from agents.mcp import catalog
from agents.models import McpSubscription
from tenants.context import in_schema
from tenants.principals import Principal

# Events after which an execution's state (status, output, usage) reads differently.
STATE_EVENTS = frozenset({"execution.started", "usage", "complete", "error", "cancelled", "reset"})
MAX_SUBSCRIPTIONS = 50
# A stream re-reads its subscriptions and the agents at least this often (a lost NOTIFY).
RECHECK_SECONDS = 30.0


def _salt(principal: Principal) -> str:
    return f"mcp-session:{principal.schema_name}:{principal.audit_actor}"


def new_session(principal: Principal) -> str:
    return signing.Signer(salt=_salt(principal)).sign(secrets.token_urlsafe(18))


def session_valid(principal: Principal, session: str) -> bool:
    if len(session) > 200:
        return False
    try:
        signing.Signer(salt=_salt(principal)).unsign(session)
    except signing.BadSignature:
        return False
    return True


def session_log(session: str) -> str:
    """The hub's log id of a session (no ':' in it: the NOTIFY payload is ``schema:id:n``)."""
    return "mcps-" + hashlib.sha256(session.encode()).hexdigest()[:32]


def _notify(schema: str, session: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_notify(%s, %s)", [MCP_SESSIONS_CHANNEL, f"{schema}:{session_log(session)}:0"]
        )


def subscribe(schema: str, session: str, uri: str) -> bool:
    """Add ``uri`` to the session's subscriptions (False: the session has too many)."""
    if McpSubscription.objects.filter(session=session).count() >= MAX_SUBSCRIPTIONS:
        return McpSubscription.objects.filter(session=session, uri=uri).exists()
    McpSubscription.objects.get_or_create(session=session, uri=uri)
    _notify(schema, session)
    return True


def unsubscribe(schema: str, session: str, uri: str | None = None) -> None:
    """Drop one subscription of the session, or (``uri`` None: the session ended) all."""
    rows = McpSubscription.objects.filter(session=session)
    if uri is not None:
        rows = rows.filter(uri=uri)
    rows.delete()
    _notify(schema, session)


def subscriptions_purge() -> int:
    """Subscriptions of sessions older than ``MCP_SESSION_MAX_HOURS`` (their client went away
    without ending the session): the hourly maintenance job removes them."""
    cutoff = timezone.now() - dt.timedelta(hours=settings.MCP_SESSION_MAX_HOURS)
    deleted, _ = McpSubscription.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def _subscribed(session: str) -> list[str]:
    return list(McpSubscription.objects.filter(session=session).values_list("uri", flat=True))


def _frame(event: ServerEvent) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0"}
    if isinstance(event, ResourceUpdated):
        message.update(method="notifications/resources/updated", params={"uri": event.uri})
    else:
        message["method"] = "notifications/tools/list_changed"
    return f"event: message\ndata: {json.dumps(message, separators=(',', ':'))}\n\n".encode()


async def follow_resource(
    schema: str, uri: str, execution_id: str, events: bool, after: int, out: asyncio.Queue[Any]
) -> None:
    """Put ``ResourceUpdated(uri)`` on ``out`` at each state change of the execution after
    event ``after`` (each event, for its events resource), until it ends."""
    try:
        async for event in follow_events(schema, execution_id, after=after):
            if event is None:
                continue
            if events or event.type in STATE_EVENTS:
                out.put_nowait(ResourceUpdated(uri))
            if event.terminal:
                return
    except DatabaseUnavailable:
        # The client re-reads the resource on this; a new stream follows again.
        out.put_nowait(ResourceUpdated(uri))


async def _follow_new(
    schema: str, uri: str, execution_id: str, events: bool, out: asyncio.Queue[Any]
) -> None:
    from agents.selectors import execution_last_seq

    after = await in_schema(schema, execution_last_seq, execution_id)
    if after is not None:  # not an execution of this tenant: never fires
        await follow_resource(schema, uri, execution_id, events, after, out)


async def follow_tools(schema: str, out: asyncio.Queue[Any]) -> None:
    """Put ``ToolsListChanged()`` on ``out`` whenever the tenant's tools change."""
    listed = await in_schema(schema, catalog.agents_fingerprint)
    hub = get_hub()
    while True:
        with hub.waiter(schema, AGENTS_LOG) as changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), RECHECK_SECONDS)
        now = await in_schema(schema, catalog.agents_fingerprint)
        if now != listed:
            listed = now
            out.put_nowait(ToolsListChanged())


async def session_stream(
    principal: Principal, session: str, parse_uri: Any, *, keepalive: float
) -> AsyncIterator[bytes]:
    """The session's notifications as SSE frames, until the client goes away."""
    schema = principal.schema_name
    out: asyncio.Queue[ServerEvent] = asyncio.Queue()
    followers: dict[str, asyncio.Task[None]] = {}
    tools = asyncio.create_task(follow_tools(schema, out))
    hub = get_hub()
    log = session_log(session)
    try:
        yield b": stream open\n\n"
        while True:
            wanted = set(await in_schema(schema, _subscribed, session))
            for uri in set(followers) - wanted:
                followers.pop(uri).cancel()
            for uri in wanted - set(followers):
                execution_id, events, _ = parse_uri(uri)
                followers[uri] = asyncio.create_task(
                    _follow_new(schema, uri, execution_id, events, out)
                )
            with hub.waiter(schema, log) as changed:
                deadline = asyncio.get_running_loop().time() + RECHECK_SECONDS
                while not changed.is_set():
                    left = deadline - asyncio.get_running_loop().time()
                    if left <= 0:
                        break
                    getter = asyncio.ensure_future(out.get())
                    woken = asyncio.ensure_future(changed.wait())
                    done, _ = await asyncio.wait(
                        {getter, woken},
                        timeout=min(keepalive, left),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    woken.cancel()
                    if getter in done:
                        yield _frame(getter.result())
                    else:
                        getter.cancel()
                        if not done:
                            yield b": keep-alive\n\n"
    finally:
        tools.cancel()
        for task in followers.values():
            task.cancel()
