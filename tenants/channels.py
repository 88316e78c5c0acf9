"""Tenant resolution for WebSocket connections: what ``tenants.middleware`` does for HTTP.

Channels knows nothing of tenants, so two steps fix them for a connection:

- :class:`TenantHostMiddleware` (ASGI, before the handshake is accepted) resolves the Host:
  a public host (``PUBLIC_HOSTS``) or a tenant's ``Domain``. A Host outside ``ALLOWED_HOSTS``,
  an unknown tenant host, a suspended tenant or a foreign ``Origin`` closes the handshake
  before accept (daphne answers 403). The result goes into the scope as a
  :class:`ConnectionOrigin`; no schema is set on any connection.
- :func:`authenticate_connection` (called by the consumer with the credential of the
  handshake or of the first ``auth`` message) fixes tenant and principal with the rules of
  ``tenants.access`` (the same as for HTTP): host and credential must agree, a suspended
  tenant is refused, a bad credential is audited in the tenant it names.

Every query here runs in a sync function that enters ``schema_context("public")`` itself, on
the database thread: never on the ambient schema of the shared connection.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qs, urlsplit

from asgiref.sync import sync_to_async
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.db import close_old_connections, connection
from django.http.request import split_domain_port, validate_host
from django_tenants.utils import schema_context

from tenants.access import AccessRefused, Origin, resolve_caller, served_host
from tenants.audit.services import client_address, scope_meta
from tenants.authentication import Authenticated, bearer_from_header
from tenants.models import Tenant

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# An ASGI scope is an open dict (Channels adds `url_route`, this module ORIGIN_SCOPE_KEY), read
# here, never changed in place. Channels' stubs type scopes as closed TypedDicts, so the apps
# around this middleware take the scope as Any.
Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Any, Receive, Send], Any]

ORIGIN_SCOPE_KEY = "cb_origin"


@dataclass(frozen=True)
class ConnectionOrigin:
    """Where a WebSocket connection came in: its host and, on a tenant host, that tenant."""

    host: str
    host_tenant: Tenant | None
    path: str
    client: str | None


class ConnectionRefused(Exception):
    """The connection may not authenticate; ``message`` is safe to show the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _in_public_now(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    # Like channels' database_sync_to_async: drop broken or expired connections around the call
    # (never inside an atomic block, where that would throw the transaction away).
    if not connection.in_atomic_block:
        close_old_connections()
    try:
        with schema_context("public"):
            return fn(*args, **kwargs)
    finally:
        if not connection.in_atomic_block:
            close_old_connections()


async def in_public(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run the sync ``fn`` on the database thread inside the public schema."""
    return await sync_to_async(_in_public_now, thread_sensitive=True)(fn, *args, **kwargs)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin1")
    return None


def handshake_credential(scope: Scope) -> str | None:
    """The bearer credential of the handshake: ``Authorization: Bearer …`` or ``?token=``
    (browsers cannot set headers; an ``auth`` message is better still, URLs get logged)."""
    authorization = header(scope, b"authorization")
    if authorization:
        return bearer_from_header(authorization) or authorization
    query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin1"))
    tokens = query.get("token")
    return tokens[0] if tokens and tokens[0] else None


def allowed_host(host: str) -> str | None:
    """The host name without port, lowercased, if ``ALLOWED_HOSTS`` allows it."""
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return domain.lower()


def origin_allowed(scope: Scope) -> bool:
    # Clients outside browsers send no Origin; the credential is a bearer token, never a
    # cookie, so a foreign page cannot ride a user's session. A browser's Origin must still
    # be one of our hosts.
    origin = header(scope, b"origin")
    if origin is None or origin == "null":
        return origin is None
    netloc = urlsplit(origin).netloc
    return bool(netloc) and allowed_host(netloc) is not None


def _host_tenant(host: str) -> tuple[bool, Tenant | None]:
    """(served, tenant): a public host is served without a tenant; a suspended tenant's host
    is not served at all."""
    served, tenant = served_host(host)
    if tenant is not None and not tenant.is_active:
        return False, None
    return served, tenant


class TenantHostMiddleware:
    """Resolves the handshake's Host to a tenant (or a public host) before the consumer runs;
    refuses the handshake otherwise."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> Any:
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        host = allowed_host(header(scope, b"host") or "")
        served, tenant = (False, None)
        if host is not None and origin_allowed(scope):
            served, tenant = await in_public(_host_tenant, host)
        if not served:
            logger.info("websocket handshake refused for host %r", header(scope, b"host"))
            denier: ASGIApp = WebsocketDenier()
            return await denier(scope, receive, send)
        origin = ConnectionOrigin(
            host=host or "",
            host_tenant=tenant,
            path=str(scope.get("path", "")),
            client=client_address(scope_meta(scope)),
        )
        return await self.app({**scope, ORIGIN_SCOPE_KEY: origin}, receive, send)


def _authenticate(origin: ConnectionOrigin, credential: str) -> Authenticated:
    try:
        caller = resolve_caller(
            host_tenant=origin.host_tenant,
            credential=credential,
            origin=Origin(path=origin.path, transport="websocket", client=origin.client),
        )
    except AccessRefused as refused:
        raise ConnectionRefused(refused.message) from None
    assert caller.tenant is not None and caller.principal is not None  # a credential was given
    return Authenticated(caller.tenant, caller.principal)


async def authenticate_connection(origin: ConnectionOrigin, credential: str) -> Authenticated:
    """Tenant and principal for a connection, or :class:`ConnectionRefused` (audited)."""
    return await in_public(_authenticate, origin, credential)
