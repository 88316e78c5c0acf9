"""Reads for tenants and credentials. Every lookup of a tenant-owned object goes through an
``*_get_for_tenant`` helper, so a foreign id is indistinguishable from a missing one (404)."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from config.errors import NotFound
from tenants.models import ApiKey, Domain, Tenant


def tenant_for_host(host: str) -> Tenant | None:
    domain = Domain.objects.select_related("tenant").filter(domain=host).first()
    return domain.tenant if domain is not None else None


def tenant_get_by_slug(slug: str) -> Tenant | None:
    return Tenant.objects.filter(slug=slug).first()


def api_key_list(*, tenant: Tenant) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(tenant=tenant).order_by("-created_at")


def api_key_get_for_tenant(*, tenant: Tenant, key_id: str) -> ApiKey:
    try:
        uuid.UUID(str(key_id))
    except ValueError:
        raise NotFound("API key not found.") from None
    api_key = ApiKey.objects.select_related("tenant").filter(tenant=tenant, id=key_id).first()
    if api_key is None:
        raise NotFound("API key not found.")
    return api_key
