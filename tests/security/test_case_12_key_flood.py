"""Reliability case 12: a flood of random API keys against a live server is refused while the
tenant's valid traffic, sent at the same time, keeps succeeding; the refusals that name the
tenant reach its audit log sampled (bounded), not one row per attempt.

No timing is asserted: outcomes only (every forged request 401, every valid one 200, no 5xx)."""

from __future__ import annotations

import secrets
import string
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
from django_tenants.utils import schema_context

from tenants.audit.models import AuditLog
from tests.conftest import live_server

FORGED_PER_KIND = 60
PER_MINUTE = 7  # the audit budget of the server under test (per tenant and process)


def _random_prefix() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(12))


def _forged_keys(real_key: str) -> list[str]:
    """Three kinds: random well-formed keys, alpha's prefix with random secrets (the row is
    found, the secret compared), and garbage that is no key at all."""
    prefix = real_key.split("_")[1]
    keys = []
    for _ in range(FORGED_PER_KIND):
        keys.append(f"cba_{_random_prefix()}_{secrets.token_urlsafe(32)}")
        keys.append(f"cba_{prefix}_{secrets.token_urlsafe(32)}")
        keys.append(secrets.token_hex(24))
    return keys


def _auth_failures(schema: str) -> int:
    with schema_context(schema):
        return AuditLog.objects.filter(action="auth.failure").count()


def test_a_flood_of_random_keys_is_refused_while_valid_traffic_succeeds(committed_personas):
    alpha = committed_personas["alpha"]
    forged = _forged_keys(alpha.user_key)
    before = _auth_failures(alpha.schema)
    with live_server(AUDIT_AUTH_FAILURES_PER_MINUTE=str(PER_MINUTE)) as server:
        limits = httpx.Limits(max_connections=8)
        with httpx.Client(base_url=server.url, timeout=15, limits=limits) as client:

            def send(key: str) -> tuple[str, int]:
                path = "/agents" if key == alpha.user_key else "/auth/whoami"
                response = client.get(path, headers={"Authorization": f"Bearer {key}"})
                return ("valid" if key == alpha.user_key else "forged"), response.status_code

            # One valid request after every three forged ones, all sent by 8 threads at once.
            mixed: list[str] = []
            for index, key in enumerate(forged):
                mixed.append(key)
                if index % 3 == 2:
                    mixed.append(alpha.user_key)
            with ThreadPoolExecutor(max_workers=8) as pool:
                outcomes = Counter(pool.map(send, mixed))
            assert outcomes == {
                ("forged", 401): len(forged),
                ("valid", 200): len(forged) // 3,
            }, outcomes
            whoami = client.get(
                "/auth/whoami", headers={"Authorization": f"Bearer {alpha.user_key}"}
            )
            assert whoami.status_code == 200 and whoami.json()["tenant"] == "alpha"
            refused = client.get("/auth/whoami", headers={"Authorization": f"Bearer {forged[1]}"})
            assert refused.status_code == 401
            assert forged[1].split("_", 2)[2] not in refused.text  # the secret is not echoed
    # Only alpha's prefix names alpha: those FORGED_PER_KIND attempts are sampled, at least
    # one and at most one minute's budget (plus one, should the minute have turned).
    written = _auth_failures(alpha.schema) - before
    assert 1 <= written <= 2 * PER_MINUTE, written
    with schema_context(alpha.schema):
        latest = AuditLog.objects.filter(action="auth.failure").order_by("-id").first()
        assert latest is not None and latest.details["proven"] is False
        assert "wrong secret" in latest.details["reason"]
        # Neither the real key nor any forged secret is kept.
        stored = " ".join(str(e.details) for e in AuditLog.objects.filter(action="auth.failure"))
        assert alpha.user_key not in stored
        assert not [key for key in forged[1::3] if key.split("_", 2)[2] in stored]
