"""API keys: shown once, hashed at rest, refused when wrong, revoked or expired; roles enforced."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django_tenants.utils import schema_context

from tenants.audit.models import AuditLog
from tenants.credentials import hash_api_key
from tenants.models import ApiKey
from tenants.roles import Role
from tenants.services import api_key_create, api_key_revoke


def test_create_shows_the_key_once_and_stores_only_its_hash(api, alpha):
    response = api(alpha.admin_key).post("/api-keys", {"name": "ci", "role": "readonly"})
    assert response.status_code == 201
    body = response.json()
    key = body["key"]
    stored = ApiKey.objects.get(id=body["id"])
    assert stored.key_hash == hash_api_key(key) and key not in stored.key_hash
    listed = api(alpha.admin_key).get("/api-keys").json()["api_keys"]
    assert all("key" not in item for item in listed)
    assert api(key).get("/auth/whoami").json()["role"] == "readonly"
    with schema_context(alpha.schema):
        assert AuditLog.objects.filter(action="api_key.create", target_id=body["id"]).exists()


def test_create_rejects_bad_input_naming_the_field(api, alpha):
    response = api(alpha.admin_key).post("/api-keys", {"role": "root"})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("role:")
    response = api(alpha.admin_key).post("/api-keys", {"role": "user", "tenant": "bravo"})
    assert response.status_code == 400
    assert "tenant" in response.json()["error"]["details"]


def test_wrong_key_is_401(api, alpha):
    forged = alpha.user_key[:-4] + ("AAAA" if not alpha.user_key.endswith("AAAA") else "BBBB")
    response = api(forged).get("/auth/whoami")
    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "not_authenticated",
        "message": "Invalid credentials.",
        "details": {},
    }
    with schema_context(alpha.schema):
        assert AuditLog.objects.filter(
            action="auth.failure", details__reason__startswith="wrong secret"
        ).exists()


def test_garbage_and_unknown_keys_are_401(api, alpha):
    for credential in ["nonsense", "cba_short", "cba_aaaaaaaaaaaa_" + "x" * 43, "Basic abc"]:
        client = api(None)
        response = client.client.get(
            "/auth/whoami",
            HTTP_AUTHORIZATION=(
                credential if credential.startswith("Basic") else f"Bearer {credential}"
            ),
        )
        assert response.status_code == 401, credential


def test_revoked_key_is_401(api, alpha):
    created = api_key_create(tenant=alpha.tenant, role=Role.USER)
    assert api(created.key).get("/auth/whoami").status_code == 200
    api_key_revoke(api_key=created.api_key, actor="tests")
    assert api(created.key).get("/auth/whoami").status_code == 401


def test_expired_key_is_401(api, alpha):
    created = api_key_create(
        tenant=alpha.tenant, role=Role.USER, expires_at=timezone.now() + dt.timedelta(hours=1)
    )
    created.api_key.expires_at = timezone.now() - dt.timedelta(seconds=1)
    created.api_key.save(update_fields=["expires_at"])
    assert api(created.key).get("/auth/whoami").status_code == 401


def test_readonly_key_on_a_write_is_403_and_audited(api, alpha):
    response = api(alpha.readonly_key).post("/api-keys", {"role": "admin"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    with schema_context(alpha.schema):
        entry = AuditLog.objects.filter(action="permission.denied").latest("id")
    assert entry.details["permission"] == "keys.manage" and entry.outcome == "denied"


def test_user_key_cannot_manage_keys(api, alpha):
    assert api(alpha.user_key).get("/api-keys").status_code == 403


def test_revoke_through_the_api(api, alpha):
    created = api_key_create(tenant=alpha.tenant, role=Role.USER)
    response = api(alpha.admin_key).delete(f"/api-keys/{created.api_key.id}")
    assert response.status_code == 200 and response.json()["revoked_at"]
    assert api(created.key).get("/auth/whoami").status_code == 401
    with schema_context(alpha.schema):
        assert AuditLog.objects.filter(
            action="api_key.revoke", target_id=str(created.api_key.id)
        ).exists()


def test_other_tenant_cannot_see_list_or_revoke_a_key(api, alpha, bravo):
    created = api_key_create(tenant=alpha.tenant, role=Role.USER)
    key_id = str(created.api_key.id)
    as_bravo = api(bravo.admin_key)
    assert as_bravo.get(f"/api-keys/{key_id}").status_code == 404
    assert as_bravo.delete(f"/api-keys/{key_id}").status_code == 404
    assert key_id not in {item["id"] for item in as_bravo.get("/api-keys").json()["api_keys"]}
    assert as_bravo.get("/api-keys/not-a-uuid").status_code == 404
    created.api_key.refresh_from_db()
    assert created.api_key.revoked_at is None
    # bravo's 404 for alpha's key is the same answer as for a key that never existed
    missing = as_bravo.get("/api-keys/00000000-0000-0000-0000-000000000000").json()
    assert as_bravo.get(f"/api-keys/{key_id}").json()["error"] == missing["error"]


def test_audit_log_is_per_tenant(api, alpha, bravo):
    api_key_create(tenant=alpha.tenant, role=Role.USER, name="only-in-alpha", actor="tests")
    alpha_entries = api(alpha.admin_key).get("/audit-log").json()["entries"]
    bravo_entries = api(bravo.admin_key).get("/audit-log").json()["entries"]
    assert any(e["details"].get("name") == "only-in-alpha" for e in alpha_entries)
    assert not any(e["details"].get("name") == "only-in-alpha" for e in bravo_entries)


def test_last_used_at_is_recorded(api, alpha):
    created = api_key_create(tenant=alpha.tenant, role=Role.USER)
    assert created.api_key.last_used_at is None
    api(created.key).get("/auth/whoami")
    created.api_key.refresh_from_db()
    assert created.api_key.last_used_at is not None
