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
from typing import cast

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve, set_urlconf

from config.errors import error_response
from tenants.access import AccessRefused, Origin, resolve_caller, served_host
from tenants.context import MissingTenant, tenant_connection
from tenants.models import Tenant
from tenants.principals import Principal

logger = logging.getLogger(__name__)

# Probes must answer without a tenant, a credential or (for /healthz) the database.
TENANTLESS_PATHS = frozenset({"/healthz", "/readyz"})


class TenantRequest(HttpRequest):
    """A request as this middleware leaves it. Only a type: requests stay Django's own classes,
    which have no slot for the attributes; ``tenant_request`` says that they are there."""

    tenant: Tenant | None  # None: the public schema and URLconf
    principal: Principal | None  # None: no credential was presented
    rate_headers: dict[str, str]  # RateLimit-* of the caller's request limits (may be empty)


def tenant_request(request: HttpRequest) -> TenantRequest:
    # A cast, not a check: TenantResolutionMiddleware sets both attributes on every HTTP request
    # before any view runs, and no isinstance test can see attributes set on an instance.
    return cast(TenantRequest, request)


def request_tenant(request: HttpRequest) -> Tenant:
    """The tenant of a request to the tenant URLconf, which is served only once one is resolved.

    Raises ``MissingTenant`` rather than let tenant code run on the public schema."""
    tenant = tenant_request(request).tenant
    if tenant is None:
        raise MissingTenant("this request was resolved to no tenant")
    return tenant


def request_host(request: HttpRequest) -> str:
    host = request.get_host()  # validates against ALLOWED_HOSTS
    return host.rsplit(":", 1)[0].lower() if not host.endswith("]") else host.lower()


class TenantResolutionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        resolved = tenant_request(request)
        resolved.tenant = None
        resolved.principal = None
        resolved.rate_headers = {}
        if request.path in TENANTLESS_PATHS:
            tenant_connection.set_schema_to_public()
            request.urlconf = settings.PUBLIC_SCHEMA_URLCONF
            return self.get_response(request)
        refusal = self._resolve(resolved)
        if refusal is not None:
            tenant_connection.set_schema_to_public()  # lazy: costs a SET only if something queries
            return refusal
        set_urlconf(request.urlconf)
        response = self.get_response(request)
        for name, value in resolved.rate_headers.items():
            response.headers.setdefault(name, value)
        return response

    def _resolve(self, request: TenantRequest) -> HttpResponse | None:
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
            tenant_connection.set_schema_to_public()
            headers = dict(refused.headers)
            if refused.challenge:
                headers["WWW-Authenticate"] = 'Bearer realm="api", error="invalid_token"'
            return error_response(
                request, refused.status, refused.code, refused.message, headers=headers
            )
        request.principal = caller.principal
        request.rate_headers = caller.rate_headers
        tenant = caller.tenant
        if tenant is None:
            tenant_connection.set_schema_to_public()
            request.urlconf = settings.PUBLIC_SCHEMA_URLCONF
            if self._is_tenant_only_path(request.path):
                return error_response(
                    request,
                    401,
                    "not_authenticated",
                    "Authentication credentials were not provided.",
                    headers={"WWW-Authenticate": 'Bearer realm="api"'},
                )
            return None
        tenant_connection.set_tenant(tenant)
        request.tenant = tenant
        request.urlconf = settings.TENANT_URLCONF
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
