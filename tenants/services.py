"""Writes for tenants and their credentials."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django_tenants.utils import schema_context

from config.errors import Conflict, ValidationFailed
from tenants.audit.services import audit_record, platform_audit_record
from tenants.credentials import generate_api_key, hash_api_key
from tenants.models import ApiKey, Domain, Plan, Tenant, TenantStatus, slug_validator
from tenants.principals import Principal
from tenants.roles import ROLE_RANK, Role
from tenants.tokens import issue_token


@dataclass(frozen=True)
class CreatedTenant:
    tenant: Tenant
    domain: Domain
    api_key: str
    admin_username: str
    admin_password: str


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    key: str  # shown once


def tenant_create(
    *,
    slug: str,
    name: str,
    domain: str,
    admin_username: str = "admin",
    actor: str = "system",
    request: HttpRequest | None = None,
) -> CreatedTenant:
    """Create a tenant with its schema (a copy of the template schema, or migrated when the
    template is missing or behind: ``tenants.schema_template``), its primary domain, a first
    operator (a superuser of that tenant's admin only) and a first admin API key.

    Runs in one transaction: PostgreSQL DDL is transactional, so a failure leaves no schema
    behind.
    """
    try:
        slug_validator(slug)
    except DjangoValidationError as exc:
        raise ValidationFailed(f"slug: {exc.messages[0]}", details={"slug": exc.messages}) from None
    domain = domain.strip().lower()
    if not domain or domain in settings.PUBLIC_HOSTS:
        raise ValidationFailed("domain: must be a host name that is not one of PUBLIC_HOSTS")
    if not name.strip():
        raise ValidationFailed("name: must not be empty")
    # Tenants are created from the public schema whatever the caller's connection was left on.
    with schema_context("public"), transaction.atomic():
        if Tenant.objects.filter(slug=slug).exists():
            raise Conflict(f"slug: a tenant {slug!r} already exists")
        if Domain.objects.filter(domain=domain).exists():
            raise Conflict(f"domain: {domain!r} already belongs to a tenant")
        try:
            tenant = Tenant(slug=slug, name=name.strip(), schema_name=Tenant.schema_for_slug(slug))
            tenant.save(verbosity=0)
            tenant_domain = Domain.objects.create(domain=domain, tenant=tenant, is_primary=True)
        except IntegrityError:
            raise Conflict("a tenant with this slug or domain was created concurrently") from None
        password = secrets.token_urlsafe(18)
        with schema_context(tenant.schema_name):
            get_user_model().objects.create_superuser(
                username=admin_username, password=password, email=""
            )
        created_key = api_key_create(
            tenant=tenant, role=Role.ADMIN, name="first admin key", actor=actor
        )
        # Last in the transaction: the platform log's chain lock is held until it commits.
        platform_audit_record(
            actor=actor,
            action="tenant.create",
            target_type="tenant",
            target_id=tenant.slug,
            request=request,
            details={"schema": tenant.schema_name, "domain": domain, "admin": admin_username},
        )
    return CreatedTenant(tenant, tenant_domain, created_key.key, admin_username, password)


def tenant_set_status(
    *, tenant: Tenant, status: str, actor: str = "system", request: HttpRequest | None = None
) -> Tenant:
    if status not in TenantStatus.values:
        raise ValidationFailed(f"status: must be one of {', '.join(TenantStatus.values)}")
    previous = tenant.status
    tenant.status = status
    with schema_context("public"), transaction.atomic():
        tenant.save(update_fields=["status"])
        if previous != status:
            _audit_status(tenant, previous, actor, request)
    return tenant


def _audit_status(tenant: Tenant, previous: str, actor: str, request: HttpRequest | None) -> None:
    platform_audit_record(
        actor=actor,
        action="tenant.suspend" if tenant.status == TenantStatus.SUSPENDED else "tenant.activate",
        target_type="tenant",
        target_id=tenant.slug,
        request=request,
        details={"from": previous, "to": tenant.status},
    )


def _plan_slug(plan_id: Any) -> str | None:
    return Plan.objects.filter(pk=plan_id).values_list("slug", flat=True).first()


def tenant_audit_change(
    *,
    tenant: Tenant,
    changed: Iterable[str],
    before: Mapping[str, Any],
    actor: str,
    request: HttpRequest | None = None,
) -> None:
    """Platform log entries for a tenant edited elsewhere (the platform admin's form):
    ``tenant.suspend``/``tenant.activate`` for its status, ``tenant.plan_change`` for its
    plan, ``tenant.change`` naming any other changed fields. ``before``: the fields' values
    before the edit (a plan by its id)."""
    changed = set(changed)
    with schema_context("public"):
        if "status" in changed:
            _audit_status(tenant, str(before.get("status", "")), actor, request)
        if "plan" in changed:
            platform_audit_record(
                actor=actor,
                action="tenant.plan_change",
                target_type="tenant",
                target_id=tenant.slug,
                request=request,
                details={
                    "from": _plan_slug(before.get("plan")),
                    "to": tenant.plan.slug if tenant.plan else None,
                },
            )
        others = sorted(changed - {"status", "plan"})
        if others:
            platform_audit_record(
                actor=actor,
                action="tenant.change",
                target_type="tenant",
                target_id=tenant.slug,
                request=request,
                details={"fields": others},
            )


def api_key_create(
    *,
    tenant: Tenant,
    role: str,
    name: str = "",
    expires_at: dt.datetime | None = None,
    actor: str = "system",
    request: HttpRequest | None = None,
) -> CreatedApiKey:
    if role not in Role.values:
        raise ValidationFailed(f"role: must be one of {', '.join(Role.values)}")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed("expires_at: must be in the future")
    key, prefix = generate_api_key()
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name[:100],
        prefix=prefix,
        key_hash=hash_api_key(key),
        role=role,
        expires_at=expires_at,
        created_by=actor[:200],
    )
    audit_record(
        schema_name=tenant.schema_name,
        actor=actor,
        action="api_key.create",
        target_type="api_key",
        target_id=str(api_key.id),
        request=request,
        details={"prefix": prefix, "role": role, "name": api_key.name},
    )
    return CreatedApiKey(api_key, key)


def api_key_revoke(*, api_key: ApiKey, actor: str, request: HttpRequest | None = None) -> ApiKey:
    """Revoke a key (idempotent: a second revoke keeps the first time)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit_record(
            schema_name=api_key.tenant.schema_name,
            actor=actor,
            action="api_key.revoke",
            target_type="api_key",
            target_id=str(api_key.id),
            request=request,
            details={"prefix": api_key.prefix},
        )
    return api_key


def token_issue(
    *,
    principal: Principal,
    role: str | None,
    ttl_seconds: int | None,
    request: HttpRequest | None = None,
) -> tuple[str, dict[str, Any]]:
    """Exchange an API key for a short-lived JWT, for the key's role or a lower one.

    Only an API key can mint tokens: a token cannot renew itself into a longer life. Nor can it
    outlive the key: ``exp`` is capped at the key's ``expires_at`` (a key without one keeps the
    normal TTL bounds).
    """
    # An API key principal always names its key; the check says so to the type checker too.
    if principal.kind != "api_key" or principal.api_key_id is None:
        raise ValidationFailed("authorization: tokens are issued in exchange for an API key only")
    role = role or principal.role
    if role not in ROLE_RANK:
        raise ValidationFailed(f"role: must be one of {', '.join(Role.values)}")
    if ROLE_RANK[role] > ROLE_RANK[principal.role]:
        raise ValidationFailed(f"role: cannot exceed the key's role {principal.role!r}")
    ttl = ttl_seconds or settings.JWT_TTL_SECONDS
    if not 30 <= ttl <= settings.JWT_MAX_TTL_SECONDS:
        raise ValidationFailed(
            f"ttl_seconds: must be between 30 and {settings.JWT_MAX_TTL_SECONDS}"
        )
    key_expires_at = (
        ApiKey.objects.filter(pk=principal.api_key_id, tenant_id=principal.tenant_id)
        .values_list("expires_at", flat=True)
        .first()
    )
    token, claims = issue_token(
        tenant_slug=principal.tenant_slug,
        role=role,
        subject=f"api_key:{principal.identifier}",
        ttl_seconds=ttl,
        # Rounded down: the token dies in the key's last second, never a second after it.
        not_after=int(key_expires_at.timestamp()) if key_expires_at is not None else None,
    )
    # The token itself is never logged: its id (jti) names it.
    audit_record(
        schema_name=principal.schema_name,
        actor=principal.audit_actor,
        action="token.issue",
        target_type="token",
        target_id=str(claims["jti"]),
        request=request,
        details={"role": role, "exp": claims["exp"], "api_key": principal.api_key_id},
    )
    return token, claims
