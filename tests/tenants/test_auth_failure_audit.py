"""Refused credentials in the tenant's audit log: a failure whose tenant is proven (the secret
was right) is always written; one that only *names* a tenant is sampled, so that anyone with a
tenant's key prefix, slug or host cannot grow its append-only log without bound."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from tenants.audit.models import AuditLog
from tenants.audit.services import MAX_DETAIL_CHARS, audit_auth_failure, auth_failure_budget
from tenants.roles import Role
from tenants.services import api_key_create, api_key_revoke
from tests.tenants.test_tokens import claims, sign

PER_MINUTE = 20


class FrozenClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(settings, monkeypatch) -> FrozenClock:
    """The budget's clock stands still unless a test moves it: counts are exact."""
    settings.AUDIT_AUTH_FAILURES_PER_MINUTE = PER_MINUTE
    frozen = FrozenClock()
    monkeypatch.setattr(auth_failure_budget, "clock", frozen)
    auth_failure_budget.reset()
    return frozen


def failures(persona) -> list[AuditLog]:
    with schema_context(persona.schema):
        return list(AuditLog.objects.filter(action="auth.failure").order_by("id"))


def wrong_secret(key: str) -> str:
    return key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")


def whoami(credential: str, host: str = "localhost", client: Client | None = None, **meta: str):
    return (client or Client()).get(
        "/auth/whoami", HTTP_HOST=host, HTTP_AUTHORIZATION=f"Bearer {credential}", **meta
    )


def test_ten_thousand_wrong_secrets_add_a_bounded_number_of_rows(alpha, clock):
    before = len(failures(alpha))
    forged = wrong_secret(alpha.user_key)
    client = Client()
    for _ in range(10_000):
        assert whoami(forged, client=client).status_code == 401
    written = failures(alpha)[before:]
    assert len(written) == PER_MINUTE
    assert all(e.details["reason"].startswith("wrong secret") for e in written)
    assert all(e.details["proven"] is False for e in written)

    # A minute later entries are written again, and the first says how many were not.
    clock.now += 60
    assert whoami(forged).status_code == 401
    latest = failures(alpha)[-1]
    assert latest.details["suppressed"] == 10_000 - PER_MINUTE
    assert whoami(forged).status_code == 401
    assert "suppressed" not in failures(alpha)[-1].details


def test_budget_refills_with_time_not_all_at_once(alpha, clock):
    forged = wrong_secret(alpha.user_key)
    for _ in range(PER_MINUTE + 5):
        whoami(forged)
    count = len(failures(alpha))
    clock.now += 60 / PER_MINUTE * 3  # three entries' worth of time
    for _ in range(10):
        whoami(forged)
    assert len(failures(alpha)) == count + 3


def test_proven_failures_are_always_written(alpha, clock):
    revoked = api_key_create(tenant=alpha.tenant, role=Role.USER)
    api_key_revoke(api_key=revoked.api_key, actor="tests")
    expired = api_key_create(
        tenant=alpha.tenant, role=Role.USER, expires_at=timezone.now() + dt.timedelta(hours=1)
    )
    expired.api_key.expires_at = timezone.now() - dt.timedelta(seconds=1)
    expired.api_key.save(update_fields=["expires_at"])
    forged = wrong_secret(alpha.user_key)
    for _ in range(PER_MINUTE * 2):
        whoami(forged)  # exhausts the budget
    before = len(failures(alpha))
    for _ in range(PER_MINUTE * 2):
        assert whoami(revoked.key).status_code == 401
        assert whoami(expired.key).status_code == 401
    written = failures(alpha)[before:]
    assert len(written) == PER_MINUTE * 4
    assert {e.details["reason"].split(" api key")[0] for e in written} == {"revoked", "expired"}
    assert all(e.details["proven"] is True for e in written)


@pytest.mark.parametrize(
    ("credential", "proven"),
    [
        (lambda alpha: sign(claims(role="root")), True),  # valid signature, unknown role
        (lambda alpha: sign(claims(exp=int(time.time()) - 60, iat=int(time.time()) - 600)), False),
        (lambda alpha: sign(claims(aud="someone-else")), False),
        (lambda alpha: wrong_secret(alpha.admin_key), False),
    ],
    ids=["unknown-role", "expired-token", "wrong-audience", "wrong-secret"],
)
def test_what_counts_as_proven(alpha, clock, credential, proven):
    before = len(failures(alpha))
    assert whoami(credential(alpha)).status_code == 401
    (entry,) = failures(alpha)[before:]
    assert entry.details["proven"] is proven
    assert entry.details["transport"] == "http"


def test_unverified_token_claims_are_sampled(alpha, clock):
    # A token signed by nobody we know, claiming alpha: only the claim names the tenant.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    before = len(failures(alpha))
    token = sign(claims(), key=Ed25519PrivateKey.generate())
    for _ in range(PER_MINUTE * 3):
        assert whoami(token).status_code == 401
    assert len(failures(alpha)) - before == PER_MINUTE


def test_garbage_and_foreign_credentials_on_a_tenant_host_are_sampled(alpha, bravo, clock):
    before = len(failures(alpha))
    for _ in range(PER_MINUTE * 2):
        assert whoami("garbage", host=alpha.host).status_code == 401
        # bravo's valid key proves bravo, not alpha: alpha's host was the caller's choice
        assert whoami(bravo.user_key, host=alpha.host).status_code == 403
    written = failures(alpha)[before:]
    assert len(written) == PER_MINUTE
    assert not any(e.details["proven"] for e in written)


def test_one_tenants_flood_does_not_silence_another(alpha, bravo, clock):
    for _ in range(PER_MINUTE * 2):
        whoami(wrong_secret(alpha.user_key))
    before = len(failures(bravo))
    assert whoami(wrong_secret(bravo.user_key)).status_code == 401
    assert len(failures(bravo)) == before + 1


def test_request_text_in_failure_entries_is_truncated(alpha, clock):
    long_path = "/auth/whoami" + "/x" * 3000
    response = Client().get(
        long_path,
        HTTP_HOST="localhost",
        HTTP_AUTHORIZATION=f"Bearer {wrong_secret(alpha.user_key)}",
        HTTP_USER_AGENT="agent-" + "y" * 5000,
    )
    assert response.status_code == 401
    entry = failures(alpha)[-1]
    assert entry.details["path"].startswith("/auth/whoami/x")
    assert len(entry.details["path"]) <= MAX_DETAIL_CHARS
    assert entry.details["user_agent"].startswith("agent-yyy")
    assert len(entry.details["user_agent"]) <= MAX_DETAIL_CHARS


def test_audit_auth_failure_is_one_call_for_every_transport(alpha, clock):
    audit_auth_failure(
        schema_name=alpha.schema,
        reason="r" * 1000,
        proven=False,
        path="/agents/ws",
        client="203.0.113.9",
        transport="websocket",
    )
    audit_auth_failure(
        schema_name=alpha.schema,
        reason="bad client",
        proven=True,
        path="/agents/ws",
        client="not an address",
        transport="websocket",
    )
    first, second = failures(alpha)[-2:]
    assert first.ip_address == "203.0.113.9" and first.actor == "anonymous"
    assert first.details["transport"] == "websocket" and len(first.details["reason"]) <= 256
    assert second.ip_address is None and second.details["client_unparsed"] == "not an address"
