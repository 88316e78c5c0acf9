"""Routes served inside a tenant's schema (tenant host or tenant credential)."""

from __future__ import annotations

from django.urls import include, path

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
    path("", include("tenants.urls")),
]
