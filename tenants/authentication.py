"""Turning a bearer credential (API key or tenant JWT) into a tenant and a principal.

The tenant middleware calls :func:`authenticate_bearer` once per request; DRF views then read
the principal it fixed through :class:`PrincipalAuthentication`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from tenants.credentials import api_key_matches, looks_like_api_key, split_api_key
from tenants.key_cache import cached_api_key, remember_api_key
from tenants.models import ApiKey, Tenant
from tenants.principals import Principal
from tenants.roles import Role
from tenants.tokens import InvalidToken, looks_like_jwt, unverified_tenant_claim, verify_token


class CredentialRejected(Exception):
    """The credential is not acceptable. ``tenant`` is set when the credential names a known
    tenant, so that the failure is audited there; ``reason`` is for the audit log only.
    ``proven``: the credential's secret was verified, so ``tenant`` is certain rather than
    named by the caller (see ``tenants.audit.services.audit_auth_failure``)."""

    def __init__(self, reason: str, tenant: Tenant | None = None, *, proven: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tenant = tenant
        self.proven = proven


@dataclass(frozen=True)
class Authenticated:
    tenant: Tenant
    principal: Principal


def bearer_from_header(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate_bearer(credential: str) -> Authenticated:
    if looks_like_jwt(credential):
        return _authenticate_token(credential)
    if looks_like_api_key(credential):
        return _authenticate_api_key(credential)
    raise CredentialRejected("unrecognised credential")


def _authenticate_api_key(key: str) -> Authenticated:
    prefix = split_api_key(key)
    if prefix is None:
        raise CredentialRejected("malformed api key")
    api_key = _api_key_row(prefix)
    if api_key is None:
        raise CredentialRejected("unknown api key")
    tenant = api_key.tenant
    if not api_key_matches(key, api_key.key_hash):
        raise CredentialRejected(f"wrong secret for api key {prefix}", tenant)
    now = timezone.now()
    if api_key.revoked_at is not None:
        raise CredentialRejected(f"revoked api key {prefix}", tenant, proven=True)
    if api_key.expires_at is not None and api_key.expires_at <= now:
        raise CredentialRejected(f"expired api key {prefix}", tenant, proven=True)
    _touch_last_used(api_key, now)
    principal = Principal(
        kind="api_key",
        identifier=prefix,
        role=api_key.role,
        tenant_id=tenant.pk,
        tenant_slug=tenant.slug,
        schema_name=tenant.schema_name,
        api_key_id=str(api_key.id),
    )
    return Authenticated(tenant, principal)


def _api_key_row(prefix: str) -> ApiKey | None:
    """The key's row with its tenant and plan: from this process's cache (``tenants.key_cache``,
    cleared on every change) or one query. Only the row is cached; its checks run every time."""
    api_key = cached_api_key(prefix)
    if api_key is None:
        api_key = ApiKey.objects.select_related("tenant__plan").filter(prefix=prefix).first()
        if api_key is not None:
            remember_api_key(api_key)
    return api_key


def _expired(api_key: ApiKey) -> bool:
    return api_key.expires_at is not None and api_key.expires_at <= timezone.now()


def _touch_last_used(api_key: ApiKey, now: dt.datetime) -> None:
    # Conditional UPDATE: at most one write per key per resolution window, however busy the key.
    stale = now - dt.timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
    if api_key.last_used_at is not None and api_key.last_used_at >= stale:
        return  # recent enough: no statement at all on the hot path
    ApiKey.objects.filter(pk=api_key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale)
    ).update(last_used_at=now)
    # The row may be the cached one: without this, every later request would send the
    # (then no-op) UPDATE again.
    api_key.last_used_at = now


def _authenticate_token(token: str) -> Authenticated:
    try:
        claims = verify_token(token)
    except InvalidToken as exc:
        claimed = unverified_tenant_claim(token)
        named = Tenant.objects.filter(slug=claimed).first() if claimed else None
        raise CredentialRejected(f"invalid token: {exc}", named) from None
    tenant: Tenant | None
    subject = claims["sub"]
    minted_by = subject.removeprefix("api_key:") if subject.startswith("api_key:") else None
    # A key-minted token's key row carries its tenant: one (usually cached) lookup for both.
    api_key = _api_key_row(minted_by) if minted_by is not None else None
    if api_key is not None and api_key.tenant.slug == claims["tenant"]:
        tenant = api_key.tenant
    else:
        api_key = None  # a key of another tenant never vouches for this token
        tenant = Tenant.objects.select_related("plan").filter(slug=claims["tenant"]).first()
    if tenant is None:
        raise CredentialRejected("token for an unknown tenant")
    if claims["role"] not in Role.values:
        raise CredentialRejected("token with an unknown role", tenant, proven=True)
    api_key_id = None
    if minted_by is not None:
        # A token dies with the key that minted it: revoking a key (or its expiry) must not
        # leave its tokens alive.
        prefix = minted_by
        if api_key is None or api_key.revoked_at is not None or _expired(api_key):
            raise CredentialRejected(
                f"token minted by a revoked, expired or unknown key {prefix}", tenant, proven=True
            )
        api_key_id = str(api_key.id)
    principal = Principal(
        kind="token",
        identifier=claims["jti"],
        role=claims["role"],
        tenant_id=tenant.pk,
        tenant_slug=tenant.slug,
        schema_name=tenant.schema_name,
        api_key_id=api_key_id,
        token_expires_at=int(claims["exp"]),
    )
    return Authenticated(tenant, principal)


class PrincipalAuthentication(BaseAuthentication):
    """DRF side of the tenant middleware: the principal was fixed there, once per request."""

    def authenticate(self, request: Request) -> tuple[Principal, None] | None:
        principal = getattr(request._request, "principal", None)
        if principal is None:
            return None
        return principal, None

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (with WWW-Authenticate) rather than 403 when no credential came.
        return 'Bearer realm="api"'
