"""Tenant resolution for HTTP: the one place that decides which schema a request runs in.

The rules (the credential decides for API calls, the Host for browsers, they must agree,
``X-Tenant-ID`` must agree, suspended tenants and bad credentials are refused and audited) are
``tenants.access``'s; this middleware applies them to a request: unknown host → 404, a refusal
→ its status in the platform's error shape, then the schema and URLconf of the tenant. A request
with no tenant runs the *public* URLconf only (platform admin, token-less probes): tenant
endpoints are never served from the public schema.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve, set_urlconf

from config.errors import error_response
from tenants.access import AccessRefused, Origin, resolve_caller, served_host

logger = logging.getLogger(__name__)

# Probes must answer without a tenant, a credential or (for /healthz) the database.
TENANTLESS_PATHS = frozenset({"/healthz", "/readyz"})


def request_host(request: HttpRequest) -> str:
    host = request.get_host()  # validates against ALLOWED_HOSTS
    return host.rsplit(":", 1)[0].lower() if not host.endswith("]") else host.lower()


class TenantResolutionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.tenant = None  # type: ignore[attr-defined]
        request.principal = None  # type: ignore[attr-defined]
        if request.path in TENANTLESS_PATHS:
            connection.set_schema_to_public()
            request.urlconf = settings.PUBLIC_SCHEMA_URLCONF  # type: ignore[attr-defined]
            return self.get_response(request)
        refusal = self._resolve(request)
        if refusal is not None:
            connection.set_schema_to_public()  # lazy: costs a SET only if something queries
            return refusal
        set_urlconf(request.urlconf)  # type: ignore[attr-defined]
        return self.get_response(request)

    def _resolve(self, request: HttpRequest) -> HttpResponse | None:
        # Until the tenant is known only public tables are read (Domain, ApiKey, Tenant): they
        # resolve the same under any search_path, so no `SET` is spent here. Every way out of
        # this method then sets the schema explicitly (tenant, or public), so nothing of the
        # previous request's tenant survives on this thread's connection.
        host = request_host(request)
        served, host_tenant = served_host(host)
        if not served:
            return error_response(
                request, 404, "unknown_tenant", "No tenant is served at this host."
            )
        try:
            caller = resolve_caller(
                host_tenant=host_tenant,
                authorization=request.headers.get("Authorization") or None,
                claimed_tenant=request.headers.get("X-Tenant-ID"),
                origin=Origin(path=request.path, transport="http", request=request),
            )
        except AccessRefused as refused:
            connection.set_schema_to_public()
            headers = (
                {"WWW-Authenticate": 'Bearer realm="api", error="invalid_token"'}
                if refused.challenge
                else None
            )
            return error_response(
                request, refused.status, refused.code, refused.message, headers=headers
            )
        request.principal = caller.principal  # type: ignore[attr-defined]
        tenant = caller.tenant
        if tenant is None:
            connection.set_schema_to_public()
            request.urlconf = settings.PUBLIC_SCHEMA_URLCONF  # type: ignore[attr-defined]
            if self._is_tenant_only_path(request.path):
                return error_response(
                    request,
                    401,
                    "not_authenticated",
                    "Authentication credentials were not provided.",
                    headers={"WWW-Authenticate": 'Bearer realm="api"'},
                )
            return None
        connection.set_tenant(tenant)
        request.tenant = tenant  # type: ignore[attr-defined]
        request.urlconf = settings.TENANT_URLCONF  # type: ignore[attr-defined]
        return None

    @staticmethod
    def _is_tenant_only_path(path: str) -> bool:
        try:
            resolve(path, urlconf=settings.PUBLIC_SCHEMA_URLCONF)
            return False
        except Resolver404:
            pass
        try:
            resolve(path, urlconf=settings.TENANT_URLCONF)
            return True
        except Resolver404:
            return False
