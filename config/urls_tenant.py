"""Routes served inside a tenant's schema (tenant host or tenant credential)."""

from __future__ import annotations

from django.urls import include, path

from agents.api.schema import ApiDocsView, ApiSchemaView
from agents.console import console
from config.admin_sites import tenant_admin_site
from config.health import healthz, readyz

handler400 = "config.errors.handler400"
handler403 = "config.errors.handler403"
handler404 = "config.errors.handler404"
handler500 = "config.errors.handler500"

urlpatterns = [
    path("healthz", healthz),
    path("readyz", readyz),
    path("admin/", tenant_admin_site.urls),
    path("console/", console, name="console"),
    path("api/schema/", ApiSchemaView.as_view(), name="api-schema"),
    path("api/docs/", ApiDocsView.as_view(), name="api-docs"),
    path("", include("tenants.urls")),
    path("", include("agents.urls")),
    path("", include("agents.openai_compat.urls")),
    path("", include("workflow_bridge.urls")),
    path("", include("workflow_bridge.stream_urls")),
]
