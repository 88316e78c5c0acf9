"""Who is calling and what they may do: the one home of access control, for every interface.

- :func:`resolve_caller` turns a host and a bearer credential into a tenant and a principal
  with the platform's rules: the credential decides the tenant of an API call, the Host the
  tenant of a browser; they must agree; ``X-Tenant-ID`` must name the credential's tenant; a
  suspended tenant is refused; a bad credential is audited in the tenant it names. The HTTP
  middleware (``tenants.middleware``) and the WebSocket handshake (``tenants.channels``) both
  call it; neither has rules of its own.
- :func:`authorize` checks one permission of a principal and audits a denial, for DRF views,
  the SSE views, the WebSocket consumer, the admin and the execution core.
- :func:`served_host` says whether a host serves the platform, a tenant, or nothing.

Every query here runs in the public schema; callers outside a request enter it themselves
(``in_public``) as the tenancy rules require.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest

from config.errors import PermissionRefused
from config.logs import bind_caller
from config.middleware import request_id_for
from tenants import ratelimit
from tenants.audit.models import AuditOutcome
from tenants.audit.services import audit_auth_failure, audit_record, client_address
from tenants.authentication import CredentialRejected, authenticate_bearer, bearer_from_header
from tenants.models import Tenant
from tenants.plans import Limits, cached_limits, limits_for, limits_of
from tenants.principals import Principal
from tenants.roles import Permission
from tenants.selectors import tenant_for_host

logger = logging.getLogger(__name__)

# Longer than any API key or token we issue (tokens are capped at 4 KiB): refused unread.
MAX_CREDENTIAL_CHARS = 8192


class AccessRefused(Exception):
    """The caller may not go on. ``status``/``code``/``message`` are safe to show."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        challenge: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        # 401s carry a WWW-Authenticate challenge over HTTP.
        self.challenge = challenge
        # Headers that belong to the refusal over HTTP (429: Retry-After, RateLimit-*).
        self.headers = headers or {}


@dataclass(frozen=True)
class Caller:
    """The resolved caller: a tenant (None on a platform host without a credential) and, when
    a credential was given, its principal."""

    tenant: Tenant | None
    principal: Principal | None
    # RateLimit-* headers for the response (the tightest of the caller's request limits).
    rate_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Origin:
    """Where a call came in, for the audit log."""

    path: str
    transport: str  # "http", "websocket", ...
    # The client's address (``tenants.audit.services.client_address``) when there is no request.
    client: str | None = None
    # Over HTTP: the request (its client address and request id go into the audit entry).
    request: HttpRequest | None = None


def served_host(host: str) -> tuple[bool, Tenant | None]:
    """(served, tenant): a public host is served without a tenant; a tenant's domain with its
    tenant (suspended ones included: refusing them is :func:`resolve_caller`'s job)."""
    if host in settings.PUBLIC_HOSTS:
        return True, None
    tenant = tenant_for_host(host)
    return tenant is not None, tenant


def _audit_auth_failure(
    tenant: Tenant | None, reason: str, origin: Origin, *, proven: bool
) -> None:
    if tenant is None:
        logger.info("authentication failure naming no tenant: %s", reason)
        return
    request = origin.request
    audit_auth_failure(
        schema_name=tenant.schema_name,
        reason=reason,
        proven=proven,
        path=origin.path,
        client=client_address(request.META) if request is not None else origin.client,
        transport=origin.transport,
        request_id=request_id_for(request) if request is not None else "",
        user_agent=request.headers.get("User-Agent", "") if request is not None else "",
    )


def resolve_caller(
    *,
    host_tenant: Tenant | None,
    authorization: str | None = None,
    credential: str | None = None,
    claimed_tenant: str | None = None,
    origin: Origin,
) -> Caller:
    """The caller of one request or connection (sync, public schema). ``host_tenant``: the
    tenant whose domain the call came to (None on a platform host); ``authorization``: an
    ``Authorization`` header value (must be ``Bearer …``), or ``credential``: a bare API key or
    token (a WebSocket's ``auth`` message); ``claimed_tenant``: an ``X-Tenant-ID`` header.
    Raises :class:`AccessRefused` (audited where a tenant is named).
    """
    tenant = host_tenant
    principal: Principal | None = None
    if authorization:
        credential = bearer_from_header(authorization) or ""
    if authorization or credential is not None:
        try:
            if not credential:
                raise CredentialRejected("authorization header is not a bearer credential")
            if len(credential) > MAX_CREDENTIAL_CHARS:
                raise CredentialRejected("oversized credential")
            authenticated = authenticate_bearer(credential)
        except CredentialRejected as rejected:
            # Proven only when the secret was verified: a tenant merely named is sampled.
            _audit_auth_failure(
                rejected.tenant or host_tenant,
                rejected.reason,
                origin,
                proven=rejected.proven and rejected.tenant is not None,
            )
            raise AccessRefused(
                401, "not_authenticated", "Invalid credentials.", challenge=True
            ) from None
        if host_tenant is not None and host_tenant.pk != authenticated.tenant.pk:
            # Proven for the credential's tenant, not for this host's: anyone picks the host.
            _audit_auth_failure(host_tenant, "credential of another tenant", origin, proven=False)
            raise AccessRefused(
                403, "tenant_mismatch", "The credential does not belong to this host's tenant."
            )
        tenant = authenticated.tenant
        principal = authenticated.principal
    if claimed_tenant is not None and (
        principal is None or tenant is None or claimed_tenant != tenant.slug
    ):
        if tenant is not None:
            _audit_auth_failure(
                tenant,
                f"X-Tenant-ID {claimed_tenant[:60]!r} disagrees",
                origin,
                proven=principal is not None,
            )
        raise AccessRefused(
            403, "tenant_mismatch", "X-Tenant-ID must name the credential's tenant."
        )
    if tenant is not None and not tenant.is_active:
        raise AccessRefused(403, "tenant_suspended", "This tenant is suspended.")
    if tenant is not None:
        # Every later log line of this request or connection names the caller.
        bind_caller(
            tenant=tenant.schema_name, principal=principal.audit_actor if principal else None
        )
    rate_headers: dict[str, str] = {}
    if tenant is not None and principal is not None:
        rate_headers = check_request_rate(limits_of(tenant), principal)
    return Caller(tenant, principal, rate_headers)


REQUEST_RATE_CODES = {
    "tenant": "tenant_request_rate_exceeded",
    "key": "key_request_rate_exceeded",
}


def request_buckets(limits: Limits, principal: Principal) -> list[ratelimit.Bucket]:
    """The request-rate buckets of a call: the tenant's and (per key) the credential's key."""
    buckets = []
    if limits.requests_per_minute is not None:
        buckets.append(
            ratelimit.Bucket(
                f"req:t:{principal.tenant_id}",
                limits.requests_per_minute,
                60.0,
                REQUEST_RATE_CODES["tenant"],
            )
        )
    if limits.requests_per_minute_per_key is not None:
        # A token counts for the key that minted it; a user (admin) or workflow for itself.
        who = principal.api_key_id or principal.audit_actor
        buckets.append(
            ratelimit.Bucket(
                f"req:k:{principal.tenant_id}:{who}",
                limits.requests_per_minute_per_key,
                60.0,
                REQUEST_RATE_CODES["key"],
            )
        )
    return buckets


def check_request_rate(limits: Limits, principal: Principal) -> dict[str, str]:
    """Take one request from the caller's buckets; the RateLimit-* headers, or
    :class:`AccessRefused` 429 naming the limit that was hit (sync)."""
    buckets = request_buckets(limits, principal)
    if not buckets:
        return {}
    decisions = ratelimit.take(buckets)
    headers = ratelimit.headers(decisions)
    hit = ratelimit.refused(decisions)
    if hit is not None:
        raise AccessRefused(
            429,
            hit.bucket.code,
            f"Too many requests: {hit.bucket.limit} per minute "
            f"({'tenant' if hit.bucket.code == REQUEST_RATE_CODES['tenant'] else 'API key'}); "
            f"retry after {headers['Retry-After']} s.",
            headers=headers,
        )
    return headers


def _audit_denial(
    principal: Principal,
    permission: Permission,
    request: HttpRequest | None,
    details: dict[str, Any],
) -> None:
    audit_record(
        schema_name=principal.schema_name,
        actor=principal.audit_actor,
        action="permission.denied",
        outcome=AuditOutcome.DENIED,
        request=request,
        details={"permission": str(permission), "role": principal.role, **details},
    )


def authorize(
    principal: Principal,
    permission: Permission,
    *,
    request: HttpRequest | None = None,
    **details: Any,
) -> None:
    """Allow, or audit the denial in the principal's tenant and raise ``PermissionRefused``
    (403). ``details`` say where (method, path, message type) for the audit entry. Sync."""
    if principal.can(permission):
        return
    _audit_denial(principal, permission, request, details)
    raise PermissionRefused("Your role does not allow this operation.")


async def authorize_async(
    principal: Principal,
    permission: Permission,
    *,
    request: HttpRequest | None = None,
    **details: Any,
) -> None:
    """:func:`authorize` for async code (the audit write runs on the database thread)."""
    if principal.can(permission):
        return
    await sync_to_async(_audit_denial, thread_sensitive=True)(
        principal, permission, request, details
    )
    raise PermissionRefused("Your role does not allow this operation.")


def _admit_frame(principal: Principal) -> None:
    check_request_rate(limits_for(principal.schema_name), principal)


async def admit_frame(principal: Principal) -> None:
    """A request frame on an open WebSocket counts as one API request against the plan's
    per-minute buckets, like an HTTP request: a connection authenticated once must not then
    send without bound. :class:`AccessRefused` 429 names the limit (its headers carry
    Retry-After)."""
    limits = cached_limits(principal.schema_name)
    if limits is not None and not request_buckets(limits, principal):
        return  # the plan limits no request rate: no thread hop, no statement
    await sync_to_async(_admit_frame, thread_sensitive=True)(principal)
