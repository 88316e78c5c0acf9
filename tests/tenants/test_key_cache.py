"""API key rows cached per process: a known key costs no query to authenticate, and a change
to the key, its tenant or its plan is seen at once, here and in another server process."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context

from tenants.models import ApiKey, Tenant, TenantStatus
from tenants.roles import Role
from tenants.services import api_key_create
from tests.api.conftest import auth
from tests.conftest import live_server
from tests.tenants.test_auth_failure_audit import wrong_secret


def _key_queries(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "tenants_apikey" in q["sql"]]


def test_a_known_key_is_authenticated_without_a_query(api, alpha, bravo):
    client = api(alpha.user_key)
    assert client.get("/auth/whoami").status_code == 200  # the row is read once
    with CaptureQueriesContext(connection) as captured:
        whoami = client.get("/auth/whoami")
    assert whoami.status_code == 200 and whoami.json()["tenant"] == alpha.slug
    assert _key_queries(captured) == []
    # The cache holds rows, not verdicts: a wrong secret under a cached prefix is still refused.
    assert api(wrong_secret(alpha.user_key)).get("/auth/whoami").status_code == 401
    # The other tenant's key answers for the other tenant only.
    assert api(bravo.user_key).get("/auth/whoami").json()["tenant"] == bravo.slug
    assert api(bravo.user_key).get(f"/agents/{'x' * 8}").status_code == 404


def test_revoking_a_key_refuses_it_on_the_next_request(api, alpha):
    created = api_key_create(tenant=alpha.tenant, role=Role.USER, name="soon revoked")
    assert api(created.key).get("/auth/whoami").status_code == 200  # now cached
    assert api(alpha.admin_key).delete(f"/api-keys/{created.api_key.id}").status_code == 200
    assert api(created.key).get("/auth/whoami").status_code == 401


def test_an_expiry_moved_earlier_is_seen_on_the_next_request(api, alpha):
    created = api_key_create(tenant=alpha.tenant, role=Role.USER, name="expiring")
    token = api(created.key).post("/auth/token", {}).json()["access_token"]
    assert api(token).get("/auth/whoami").status_code == 200  # key row cached via its token
    key = ApiKey.objects.get(pk=created.api_key.pk)
    key.expires_at = timezone.now()
    key.save(update_fields=["expires_at"])
    assert api(created.key).get("/auth/whoami").status_code == 401
    assert api(token).get("/auth/whoami").status_code == 401


def _until(check: Callable[[], bool], deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("the other process did not see the change in time")


@pytest.mark.django_db(transaction=True)
def test_another_process_sees_revocation_and_suspension_by_notify(committed_personas):
    """The live server caches the key; the change is made here, in another process. Its
    backstop is pushed an hour away, so only the notification can make it see the change."""
    alpha = committed_personas["alpha"]
    with live_server(CREDENTIAL_CACHE_SECONDS="3600") as server:
        _revoke_and_suspend(server.url, alpha)


def _revoke_and_suspend(url: str, alpha) -> None:
    with schema_context("public"):
        created = api_key_create(tenant=alpha.tenant, role=Role.USER, name="watched")
        other = api_key_create(tenant=alpha.tenant, role=Role.USER, name="suspended with")

    def status(key: str) -> int:
        return httpx.get(f"{url}/auth/whoami", headers=auth(key), timeout=10).status_code

    assert status(created.key) == 200 and status(other.key) == 200
    with schema_context("public"):
        key = ApiKey.objects.get(pk=created.api_key.pk)
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    _until(lambda: status(created.key) == 401)
    assert status(other.key) == 200
    try:
        with schema_context("public"):
            tenant = Tenant.objects.get(pk=alpha.tenant.pk)
            tenant.status = TenantStatus.SUSPENDED
            tenant.save(update_fields=["status"])
        _until(lambda: status(other.key) == 403)
    finally:
        with schema_context("public"):
            tenant = Tenant.objects.get(pk=alpha.tenant.pk)
            tenant.status = TenantStatus.ACTIVE
            tenant.save(update_fields=["status"])
            ApiKey.objects.filter(pk__in=[created.api_key.pk, other.api_key.pk]).delete()
