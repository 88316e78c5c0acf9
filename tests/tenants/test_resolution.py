"""Which tenant a request runs in, and the refusals around it."""

from __future__ import annotations

from django_tenants.utils import schema_context

from tenants.audit.models import AuditLog
from tenants.models import TenantStatus


def test_credential_decides_the_tenant_on_a_public_host(api, alpha, bravo):
    assert api(alpha.user_key).get("/auth/whoami").json()["tenant"] == "alpha"
    assert api(bravo.user_key).get("/auth/whoami").json()["tenant"] == "bravo"


def test_own_key_on_own_domain_is_accepted(api, alpha):
    response = api(alpha.user_key, host=alpha.host).get("/auth/whoami")
    assert response.status_code == 200
    assert response.json()["tenant"] == "alpha"


def test_other_tenants_key_on_a_tenant_domain_is_refused_and_audited(api, alpha, bravo):
    response = api(bravo.user_key, host=alpha.host).get("/auth/whoami")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_mismatch"
    with schema_context(alpha.schema):
        assert AuditLog.objects.filter(
            action="auth.failure", details__reason__icontains="another tenant"
        ).exists()


def test_forged_tenant_header_is_refused(api, alpha):
    response = api(alpha.user_key).get("/auth/whoami", headers={"X-Tenant-ID": "bravo"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_mismatch"


def test_tenant_header_that_agrees_with_the_credential_is_accepted(api, alpha):
    response = api(alpha.user_key).get("/auth/whoami", headers={"X-Tenant-ID": "alpha"})
    assert response.status_code == 200


def test_tenant_header_without_a_credential_is_refused(api, alpha):
    response = api(None).get("/auth/whoami", headers={"X-Tenant-ID": "alpha"})
    assert response.status_code == 403


def test_unknown_host_is_404(api, alpha):
    response = api(alpha.user_key, host="nobody.localhost").get("/auth/whoami")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_tenant"


def test_suspended_tenant_is_403(api, alpha):
    alpha.tenant.status = TenantStatus.SUSPENDED
    alpha.tenant.save(update_fields=["status"])
    try:
        response = api(alpha.user_key).get("/auth/whoami")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "tenant_suspended"
        assert api(None, host=alpha.host).get("/admin/").status_code == 403
    finally:
        alpha.tenant.status = TenantStatus.ACTIVE
        alpha.tenant.save(update_fields=["status"])


def test_tenant_endpoint_without_credential_on_public_host_is_401_not_public_schema(api, alpha):
    response = api(None).get("/api-keys")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_tenant_host_without_credential_gets_401_on_api(api, alpha):
    assert api(None, host=alpha.host).get("/api-keys").status_code == 401


def test_tenant_admin_is_served_on_the_tenant_domain_only(api, alpha):
    tenant_admin = api(None, host=alpha.host).get("/admin/login/")
    public_admin = api(None).get("/admin/login/")
    assert tenant_admin.status_code == 200 and public_admin.status_code == 200
    assert b"Alpha" in tenant_admin.content
    assert b"platform" in public_admin.content


def test_probes_need_no_tenant(api, db):
    assert api(None, host="localhost").get("/healthz").json() == {"status": "ok"}
    assert api(None, host="localhost").get("/readyz").json()["database"] == "ok"
