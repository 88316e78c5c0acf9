"""Two admin sites: the platform's (public schema: tenants and plans) and each tenant's own
(tenant schema: agents, credentials, executions, audit). Which one a request sees is decided by
the URLconf the tenant middleware picked, so a tenant operator can never reach the platform site."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse


class PublicAdminSite(admin.AdminSite):
    site_header = "Circuit Breaker Agents: platform"
    site_title = "Platform admin"
    index_title = "Tenants and platform settings"

    def get_urls(self) -> list[URLResolver | URLPattern]:
        # Before the site's own patterns, whose "<app_label>/" would take "usage/".
        return [path("usage/", self.admin_view(self.usage_view), name="usage"), *super().get_urls()]

    def _may_see_usage(self, request: HttpRequest) -> bool:
        return self.has_permission(request) and request.user.has_perm("tenants.view_tenant")

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        context = super().each_context(request)
        if self._may_see_usage(request):
            context["usage_url"] = reverse(f"{self.name}:usage")
        return context

    def usage_view(self, request: HttpRequest) -> HttpResponse:
        """Every tenant's totals over a period (``from``/``to``, default the last 30 days),
        for platform staff who may view tenants. Each tenant is read in its own schema,
        entered by name (``agents.usage.usage_by_tenant``)."""
        if not self._may_see_usage(request):
            raise PermissionDenied
        # Here, not at the top: only this page of the platform site needs the agents app
        # (and the execution core it imports).
        from agents.usage import usage_by_tenant, usage_period_or_default, usage_sum
        from agents.usage_charts import tenants_chart

        period, error = usage_period_or_default(
            start=request.GET.get("from") or None, end=request.GET.get("to") or None
        )
        tenants = usage_by_tenant(since=period.since, until=period.until)
        context = {
            **self.each_context(request),
            "title": "Usage by tenant",
            "period": period,
            "error": error,
            "tenants": tenants,
            "overall": usage_sum(t.totals for t in tenants),
            "chart": tenants_chart(tenants),
        }
        return TemplateResponse(request, "admin/usage/platform.html", context)


class TenantAdminSite(admin.AdminSite):
    site_title = "Tenant admin"
    index_title = "Agents, credentials and audit"

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        context = super().each_context(request)
        tenant = getattr(request, "tenant", None)
        context["site_header"] = (
            f"Circuit Breaker Agents: {tenant.name}" if tenant else "Circuit Breaker Agents"
        )
        # The usage page is the executions admin's (agents.admin.ExecutionAdmin.usage_view).
        if self.has_permission(request) and request.user.has_perm("agents.view_execution"):
            context["usage_url"] = reverse(f"{self.name}:agents_execution_usage")
        return context


public_admin_site = PublicAdminSite(name="public_admin")
tenant_admin_site = TenantAdminSite(name="tenant_admin")

for _site in (public_admin_site, tenant_admin_site):
    _site.register(User, UserAdmin)
    _site.register(Group, GroupAdmin)
