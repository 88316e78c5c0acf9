"""Two admin sites: the platform's (public schema: tenants and plans) and each tenant's own
(tenant schema: agents, credentials, executions, audit). Which one a request sees is decided by
the URLconf the tenant middleware picked, so a tenant operator can never reach the platform site."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.http import HttpRequest


class PublicAdminSite(admin.AdminSite):
    site_header = "Circuit Breaker Agents: platform"
    site_title = "Platform admin"
    index_title = "Tenants and platform settings"


class TenantAdminSite(admin.AdminSite):
    site_title = "Tenant admin"
    index_title = "Agents, credentials and audit"

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        context = super().each_context(request)
        tenant = getattr(request, "tenant", None)
        context["site_header"] = (
            f"Circuit Breaker Agents: {tenant.name}" if tenant else "Circuit Breaker Agents"
        )
        return context


public_admin_site = PublicAdminSite(name="public_admin")
tenant_admin_site = TenantAdminSite(name="tenant_admin")

for _site in (public_admin_site, tenant_admin_site):
    _site.register(User, UserAdmin)
    _site.register(Group, GroupAdmin)
