"""Routes served on the public hosts when no credential names a tenant."""

from __future__ import annotations

from django.urls import path

from agents.api.schema import ApiDocsView, ApiSchemaView
from config.admin_sites import public_admin_site
from config.health import healthz, readyz

handler400 = "config.errors.handler400"
handler403 = "config.errors.handler403"
handler404 = "config.errors.handler404"
handler500 = "config.errors.handler500"

urlpatterns = [
    path("healthz", healthz),
    path("readyz", readyz),
    path("admin/", public_admin_site.urls),
    # The API's documentation: no credential needed, no tenant data involved.
    path("api/schema/", ApiSchemaView.as_view(), name="api-schema"),
    path("api/docs/", ApiDocsView.as_view(), name="api-docs"),
]
