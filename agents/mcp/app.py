"""``/mcp`` in the platform's ASGI application, in front of Channels.

What this layer does, in order, for every request to ``/mcp``:

1. Host and Origin: a Host outside ``ALLOWED_HOSTS`` is 400, a foreign browser ``Origin``
   403 (DNS rebinding), a host that is neither public nor a tenant's domain 404. The SDK's own
   host check is off: it knows exact hosts only, not tenant domains.
2. The caller, by the rules of ``tenants.access`` (the same as REST and WebSocket): an API
   key or tenant JWT as ``Authorization: Bearer``, agreeing with the host's tenant and
   ``X-Tenant-ID``. None or a bad one is 401 with ``WWW-Authenticate`` naming the Protected
   Resource Metadata, served here at ``/.well-known/oauth-protected-resource[/mcp]``.
3. A ``tools/call`` the caller's role may not make (a readonly key running an agent) is 403
   before the SDK sees it, audited as every denial.
4. The SDK's Streamable HTTP app, stateless, with the principal and the request id in the ASGI
   scope, where ``agents.mcp.server`` reads them.

Stateless, for both protocol eras: no MCP session lives in one process's memory, so any number
of server processes can sit behind one URL without sticky routing (and 2026-07-28 is stateless
by design). What needs state lives in the database: runs, their event logs, the agents, and a
2025-11-25 session's subscriptions. That session is this layer's, not the SDK's
(``agents.mcp.sessions``): its id comes with the ``initialize`` answer, signed for the
credential; ``GET /mcp`` with it is the session's notification stream, served here; ``DELETE``
ends it.

The SDK's session manager needs ``run()`` entered for the app's lifetime. uvicorn sends
``lifespan`` events, daphne does not, and Django's handler refuses them: this layer answers
``lifespan`` itself and starts the manager on the first ``/mcp`` request of each event loop,
in a task of its own, stopped at lifespan shutdown (or with the loop).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.conf import settings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp as StarletteApp

from agents.core.streams import open_stream
from agents.mcp.catalog import tool_permission
from agents.mcp.server import (
    PRINCIPAL_SCOPE_KEY,
    REQUEST_ID_SCOPE_KEY,
    SESSION_SCOPE_KEY,
    build_server,
    cancel_call,
    parse_uri,
)
from agents.mcp.sessions import new_session, session_stream, session_valid, unsubscribe
from config.errors import DomainError, PermissionRefused
from config.logs import bind_request
from config.metrics import KNOWN_METHODS, observe_request
from config.middleware import safe_request_id
from tenants.access import (
    AccessRefused,
    Caller,
    Origin,
    authorize_async,
    resolve_caller,
    served_host,
)
from tenants.audit.services import client_address, scope_meta
from tenants.channels import allowed_host, header, in_public, origin_allowed
from tenants.context import in_schema
from tenants.principals import Principal

logger = logging.getLogger(__name__)

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Any, Receive, Send], Awaitable[Any]]

MCP_PATH = "/mcp"
METADATA_PATHS = frozenset(
    {"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"}
)
# JSON-RPC error code of a request the caller's role may not make (HTTP 403 carries it).
FORBIDDEN = -32003


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    pass


class _Running:
    """The SDK's app and session manager for one event loop, ``run()`` held open by a task."""

    def __init__(self) -> None:
        server = build_server()
        self.app: StarletteApp = server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            max_request_body_size=settings.MCP_MAX_REQUEST_BYTES,
        )
        self._manager = server.session_manager
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        # An empty context: the manager's task group outlives whichever request started it.
        self._task = asyncio.create_task(
            self._run(), name="mcp-session-manager", context=contextvars.Context()
        )

    async def _run(self) -> None:
        async with self._manager.run():
            self._ready.set()
            await self._stop.wait()

    async def ready(self) -> None:
        waiter = asyncio.ensure_future(self._ready.wait())
        done, _ = await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            self._task.result()  # raises what stopped the manager
            raise RuntimeError("the MCP session manager stopped")

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(self._task, return_exceptions=True)


async def _send_json(
    send: Send, status: int, body: Any, headers: Mapping[str, str] | None = None
) -> None:
    raw = json.dumps(body, separators=(",", ":")).encode()
    extra = [(k.lower().encode("latin1"), v.encode("latin1")) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


def _error(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": {}}, "request_id": request_id}


def _base_url(scope: Scope) -> str:
    return f"{scope.get('scheme', 'http')}://{header(scope, b'host') or ''}"


def _challenge(scope: Scope) -> str:
    metadata = f"{_base_url(scope)}/.well-known/oauth-protected-resource{MCP_PATH}"
    return f'Bearer resource_metadata="{metadata}"'


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        body = bytes(message.get("body", b""))
        size += len(body)
        if size > settings.MCP_MAX_REQUEST_BYTES:
            raise _TooLarge
        chunks.append(body)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` with the body already read handed over first (then the client's own
    messages: the SDK watches for its disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Any:
        if pending:
            return pending.pop()
        return await receive()

    return replay


def _messages(body: bytes) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a request body. A body that does not parse is the SDK's to
    refuse (-32700)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return []
    messages = parsed if isinstance(parsed, list) else [parsed]
    return [message for message in messages if isinstance(message, dict)]


def _params(message: dict[str, Any]) -> dict[str, Any]:
    params = message.get("params")
    return params if isinstance(params, dict) else {}


def _tool_calls(messages: list[dict[str, Any]]) -> list[tuple[Any, str]]:
    """(JSON-RPC id, tool name) of each ``tools/call``."""
    calls = []
    for message in messages:
        if message.get("method") == "tools/call":
            name = _params(message).get("name")
            calls.append((message.get("id"), name if isinstance(name, str) else ""))
    return calls


async def _cancel_calls(principal: Principal, messages: list[dict[str, Any]]) -> None:
    # 2025-11-25 clients cancel with a notification in a POST of its own, which a stateless
    # server cannot route to the request it names: the call is found by credential and id.
    for message in messages:
        if message.get("method") == "notifications/cancelled":
            rpc_id = _params(message).get("requestId")
            if isinstance(rpc_id, str | int) and not isinstance(rpc_id, bool):
                await cancel_call(principal, rpc_id)


async def _refused_call(
    principal: Principal, messages: list[dict[str, Any]]
) -> tuple[Any, str] | None:
    for request_id, name in _tool_calls(messages):
        try:
            await authorize_async(
                principal, tool_permission(name), transport="mcp", tool=name[:128]
            )
        except PermissionRefused as refused:
            return request_id, refused.message
    return None


class McpApplication:
    """Routes ``/mcp`` and the metadata documents here, ``lifespan`` here, the rest to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._running: dict[asyncio.AbstractEventLoop, _Running] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        kind = scope["type"]
        if kind == "lifespan":
            return await self._lifespan(receive, send)
        if kind == "http":
            path = scope.get("path", "")
            if path == MCP_PATH:
                return await self._observed(scope, receive, send)
            if path in METADATA_PATHS:
                return await self._metadata(scope, send)
        return await self.app(scope, receive, send)

    # ---- the session manager's lifetime ----

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                running = self._running.pop(asyncio.get_running_loop(), None)
                if running is not None:
                    await running.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _started(self) -> _Running:
        loop = asyncio.get_running_loop()
        running = self._running.get(loop)
        if running is None:
            # Event loops that ended (tests run many) leave their entry: drop those.
            for old in [old for old in self._running if old.is_closed()]:
                del self._running[old]
            running = self._running[loop] = _Running()
        await running.ready()
        return running

    # ---- requests ----

    async def _caller(
        self, scope: Scope, request_id: str
    ) -> Caller | tuple[int, dict[str, Any], dict[str, str]]:
        host = allowed_host(header(scope, b"host") or "")
        if host is None:
            return 400, _error("bad_request", "Invalid Host header.", request_id), {}
        if not origin_allowed(scope):
            return (
                403,
                _error("origin_not_allowed", "This Origin may not call /mcp.", request_id),
                {},
            )
        served, tenant = await in_public(served_host, host)
        if not served:
            return 404, _error("not_found", "Unknown host.", request_id), {}
        try:
            return await in_public(
                resolve_caller,
                host_tenant=tenant,
                authorization=header(scope, b"authorization"),
                claimed_tenant=header(scope, b"x-tenant-id"),
                origin=Origin(
                    path=MCP_PATH, transport="mcp", client=client_address(scope_meta(scope))
                ),
            )
        except AccessRefused as refused:
            return (
                refused.status,
                _error(refused.code, refused.message, request_id),
                refused.headers,
            )

    async def _observed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``/mcp`` does not pass Django's middleware: count and time it here like any request
        (to its response's start: a session stream's lifetime is not its latency), and give
        its log lines their request id."""
        started = time.perf_counter()
        method = scope.get("method") or "GET"
        method = method if method in KNOWN_METHODS else "OTHER"

        async def send_observed(message: Any) -> None:
            if message["type"] == "http.response.start":
                observe_request(method, MCP_PATH, message["status"], time.perf_counter() - started)
            await send(message)

        await self._mcp(scope, receive, send_observed)

    async def _mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = safe_request_id(header(scope, b"x-request-id") or "")
        bind_request(request_id)
        found = await self._caller(scope, request_id)
        if isinstance(found, tuple):
            status, body, refusal_headers = found
            headers = {"X-Request-ID": request_id, **refusal_headers}
            if status == 401:
                headers["WWW-Authenticate"] = _challenge(scope)
            return await _send_json(send, status, body, headers)
        principal = found.principal
        if principal is None:
            return await _send_json(
                send,
                401,
                _error(
                    "not_authenticated", "Authentication credentials were not provided.", request_id
                ),
                {"WWW-Authenticate": _challenge(scope), "X-Request-ID": request_id},
            )
        method = scope.get("method")
        session = header(scope, b"mcp-session-id")
        if session is not None and not session_valid(principal, session):
            # Unknown to this credential: the client starts a new session (initialize).
            return await _send_json(
                send,
                404,
                _error("session_not_found", "Unknown MCP session.", request_id),
                {"X-Request-ID": request_id},
            )
        if session is not None and method == "GET":
            return await self._session_stream(principal, session, receive, send, request_id)
        if session is not None and method == "DELETE":
            await in_schema(principal.schema_name, unsubscribe, principal.schema_name, session)
            return await _send_json(send, 200, {}, {"X-Request-ID": request_id})
        opened: str | None = None
        if method == "POST":
            try:
                raw = await _read_body(receive)
            except _Gone:
                return None
            except _TooLarge:
                return await _send_json(
                    send,
                    413,
                    _error("request_too_large", "The request body is too large.", request_id),
                    {"X-Request-ID": request_id},
                )
            messages = _messages(raw)
            refused = await _refused_call(principal, messages)
            if refused is not None:
                rpc_id, message = refused
                return await _send_json(
                    send,
                    403,
                    {
                        "jsonrpc": "2.0",
                        "id": rpc_id,
                        "error": {"code": FORBIDDEN, "message": message},
                    },
                    {"X-Request-ID": request_id},
                )
            await _cancel_calls(principal, messages)
            if session is None and any(m.get("method") == "initialize" for m in messages):
                # 2025-11-25: a session id, signed for this credential, lets the client open
                # its notification stream (GET) and subscribe; no process keeps it.
                opened = new_session(principal)
            receive = _replaying(raw, receive)
        running = await self._started()

        added = [(b"x-request-id", request_id.encode())]
        if opened is not None:
            added.append((b"mcp-session-id", opened.encode()))

        async def send_identified(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        inner = {
            **scope,
            # The SDK serves stateless: the session is this layer's, not the SDK's.
            "headers": [(k, v) for k, v in scope.get("headers", []) if k != b"mcp-session-id"],
            PRINCIPAL_SCOPE_KEY: principal,
            REQUEST_ID_SCOPE_KEY: request_id,
            SESSION_SCOPE_KEY: session or opened,
        }
        await running.app(inner, receive, send_identified)

    async def _session_stream(
        self, principal: Principal, session: str, receive: Receive, send: Send, request_id: str
    ) -> None:
        """A 2025-11-25 session's standing stream: its subscriptions' updates and tool list
        changes, as SSE, until the client disconnects. One of the plan's open streams."""
        try:
            lease = await open_stream(principal)
        except DomainError as refused:
            return await _send_json(
                send,
                refused.status,
                _error(refused.code, refused.message, request_id),
                {**refused.headers, "X-Request-ID": request_id},
            )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                    (b"x-request-id", request_id.encode()),
                ],
            }
        )

        async def stream() -> None:
            frames = session_stream(
                principal, session, parse_uri, keepalive=settings.SSE_HEARTBEAT_SECONDS
            )
            async for frame in frames:
                await send({"type": "http.response.body", "body": frame, "more_body": True})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.ensure_future(stream()), asyncio.ensure_future(disconnected())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.shield(lease.close())

    async def _metadata(self, scope: Scope, send: Send) -> None:
        """RFC 9728 Protected Resource Metadata: where a client gets a token for ``/mcp``."""
        request_id = safe_request_id(header(scope, b"x-request-id") or "")
        if scope.get("method") not in ("GET", "HEAD"):
            return await _send_json(
                send,
                405,
                _error("method_not_allowed", "Use GET.", request_id),
                {"Allow": "GET, HEAD"},
            )
        host = allowed_host(header(scope, b"host") or "")
        if host is None:
            return await _send_json(
                send, 400, _error("bad_request", "Invalid Host header.", request_id)
            )
        served, _tenant = await in_public(served_host, host)
        if not served:
            return await _send_json(send, 404, _error("not_found", "Unknown host.", request_id))
        base = _base_url(scope)
        await _send_json(
            send,
            200,
            {
                "resource": f"{base}{MCP_PATH}",
                "authorization_servers": list(settings.MCP_AUTHORIZATION_SERVERS) or [base],
                "bearer_methods_supported": ["header"],
                "resource_name": "Circuit Breaker Agents",
                "resource_documentation": f"{base}/api/docs/",
            },
            {"Cache-Control": "max-age=300"},
        )
