"""Tenant resolution: the one place that decides which schema a request runs in.

- API calls: the credential (API key or tenant JWT) decides the tenant.
- Browsers and the admin: the Host decides (a tenant's Domain).
- Host and credential must agree (403 otherwise); ``X-Tenant-ID`` is accepted only when it
  names the credential's tenant (403 otherwise).
- Unknown host → 404; suspended tenant → 403; a bad credential → 401, audited in the tenant it
  names.
- A request with no tenant runs the *public* URLconf only (platform admin, token-less probes):
  tenant endpoints are never served from the public schema.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve, set_urlconf

from config.errors import error_response
from config.middleware import request_id_for
from tenants.audit.services import audit_auth_failure, client_address
from tenants.authentication import CredentialRejected, authenticate_bearer, bearer_from_header
from tenants.models import Tenant
from tenants.selectors import tenant_for_host

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
        host_tenant: Tenant | None = None
        if host not in settings.PUBLIC_HOSTS:
            host_tenant = tenant_for_host(host)
            if host_tenant is None:
                return error_response(
                    request, 404, "unknown_tenant", "No tenant is served at this host."
                )

        tenant = host_tenant
        authorization = request.headers.get("Authorization", "")
        if authorization:
            credential = bearer_from_header(authorization)
            try:
                if credential is None:
                    raise CredentialRejected("authorization header is not a bearer credential")
                authenticated = authenticate_bearer(credential)
            except CredentialRejected as rejected:
                self._audit_failure(
                    request,
                    rejected.tenant or host_tenant,
                    rejected.reason,
                    proven=rejected.proven and rejected.tenant is not None,
                )
                return error_response(
                    request,
                    401,
                    "not_authenticated",
                    "Invalid credentials.",
                    headers={"WWW-Authenticate": 'Bearer realm="api", error="invalid_token"'},
                )
            if host_tenant is not None and host_tenant.pk != authenticated.tenant.pk:
                # Proven for the credential's tenant, not for this host's: anyone picks the host.
                self._audit_failure(
                    request, host_tenant, "credential of another tenant", proven=False
                )
                return error_response(
                    request,
                    403,
                    "tenant_mismatch",
                    "The credential does not belong to this host's tenant.",
                )
            tenant = authenticated.tenant
            request.principal = authenticated.principal  # type: ignore[attr-defined]

        claimed = request.headers.get("X-Tenant-ID")
        if claimed is not None and (request.principal is None or claimed != tenant.slug):  # type: ignore[attr-defined,union-attr]
            if tenant is not None:
                self._audit_failure(
                    request,
                    tenant,
                    f"X-Tenant-ID {claimed[:60]!r} disagrees",
                    proven=request.principal is not None,  # type: ignore[attr-defined]
                )
            return error_response(
                request, 403, "tenant_mismatch", "X-Tenant-ID must name the credential's tenant."
            )

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

        if not tenant.is_active:
            connection.set_schema_to_public()
            return error_response(request, 403, "tenant_suspended", "This tenant is suspended.")
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

    @staticmethod
    def _audit_failure(
        request: HttpRequest, tenant: Tenant | None, reason: str, *, proven: bool
    ) -> None:
        if tenant is None:
            logger.info("authentication failure naming no tenant: %s", reason)
            return
        audit_auth_failure(
            schema_name=tenant.schema_name,
            reason=reason,
            proven=proven,
            path=request.path,
            client=client_address(request.META),
            transport="http",
            request_id=request_id_for(request),
            user_agent=request.headers.get("User-Agent", ""),
        )
