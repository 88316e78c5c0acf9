"""Tenant JWTs: issued for an API key; every malformed or hostile token is a plain 401."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.utils import timezone

from tenants.roles import Role
from tenants.services import api_key_create, api_key_revoke
from tenants.signing import key_ring


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "sub": "user:mallory",
        "tenant": "alpha",
        "role": "admin",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(
    payload: dict[str, object], *, key: Ed25519PrivateKey | None = None, kid: str | None = None
) -> str:
    ring = key_ring()
    return jwt.encode(
        payload, key or ring.private_key, algorithm="EdDSA", headers={"kid": kid or ring.active_kid}
    )


def test_issued_token_authenticates_as_the_tenant(api, alpha):
    response = api(alpha.user_key).post("/auth/token", {})
    assert response.status_code == 201
    body = response.json()
    assert body["token_type"] == "Bearer" and body["tenant"] == "alpha" and body["role"] == "user"
    whoami = api(body["access_token"]).get("/auth/whoami").json()
    assert whoami["tenant"] == "alpha" and whoami["principal"].startswith("token:")


def test_token_can_be_downscoped_but_not_upscoped(api, alpha):
    down = api(alpha.user_key).post("/auth/token", {"role": "readonly"})
    assert down.status_code == 201 and down.json()["role"] == "readonly"
    up = api(alpha.user_key).post("/auth/token", {"role": "admin"})
    assert up.status_code == 400 and up.json()["error"]["message"].startswith("role:")


def test_a_token_cannot_mint_another_token(api, alpha):
    token = api(alpha.user_key).post("/auth/token", {}).json()["access_token"]
    assert api(token).post("/auth/token", {}).status_code == 400


def test_token_dies_with_its_api_key(api, alpha):
    created = api_key_create(tenant=alpha.tenant, role=Role.USER)
    token = api(created.key).post("/auth/token", {}).json()["access_token"]
    assert api(token).get("/auth/whoami").status_code == 200
    api_key_revoke(api_key=created.api_key, actor="tests")
    assert api(token).get("/auth/whoami").status_code == 401


def test_token_expires_no_later_than_the_key_that_minted_it(api, alpha, settings):
    settings.JWT_MAX_TTL_SECONDS = 3600
    key_expiry = timezone.now() + dt.timedelta(minutes=10)
    created = api_key_create(tenant=alpha.tenant, role=Role.USER, expires_at=key_expiry)
    response = api(created.key).post("/auth/token", {"ttl_seconds": 3600})
    assert response.status_code == 201
    body = response.json()
    assert body["expires_in"] <= 600
    exp = jwt.decode(body["access_token"], options={"verify_signature": False})["exp"]
    assert exp <= key_expiry.timestamp()
    assert api(body["access_token"]).get("/auth/whoami").status_code == 200


def test_token_of_a_key_without_expiry_keeps_the_normal_lifetime(api, alpha, settings):
    settings.JWT_TTL_SECONDS = 900
    body = api(alpha.user_key).post("/auth/token", {}).json()
    assert body["expires_in"] == 900
    body = api(alpha.user_key).post("/auth/token", {"ttl_seconds": 120}).json()
    assert body["expires_in"] == 120


def test_token_dies_when_its_api_key_expires(api, alpha):
    created = api_key_create(
        tenant=alpha.tenant, role=Role.USER, expires_at=timezone.now() + dt.timedelta(hours=1)
    )
    token = api(created.key).post("/auth/token", {}).json()["access_token"]
    assert api(token).get("/auth/whoami").status_code == 200
    # The key's expiry moved earlier after the token was minted (or the clock passed it).
    created.api_key.expires_at = timezone.now() - dt.timedelta(seconds=1)
    created.api_key.save(update_fields=["expires_at"])
    response = api(token).get("/auth/whoami")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid credentials."


def test_token_of_one_tenant_on_another_tenants_host_is_refused(api, alpha, bravo):
    token = api(alpha.user_key).post("/auth/token", {}).json()["access_token"]
    assert api(token, host=bravo.host).get("/auth/whoami").status_code == 403


def test_token_signed_by_the_previous_key_still_verifies(api, alpha):
    previous_path = settings.JWT_SIGNING_KEYS.split(",")[1].split("=", 1)[1]
    previous = serialization.load_pem_private_key(open(previous_path, "rb").read(), password=None)
    token = sign(claims(sub="user:rotated"), key=previous, kid="test-previous")  # type: ignore[arg-type]
    assert api(token).get("/auth/whoami").status_code == 200


def _alg_none() -> str:
    return f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims()).encode())}."


def _hs256_with_public_key() -> str:
    public_pem = (
        key_ring()
        .public_keys[key_ring().active_kid]
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key_ring().active_kid}).encode())
    body = b64(json.dumps(claims()).encode())
    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


HOSTILE_TOKENS = {
    "alg_none": _alg_none,
    "hs256_signed_with_public_key": _hs256_with_public_key,
    "missing_exp": lambda: sign(claims(exp=None)),
    "wrong_aud": lambda: sign(claims(aud="someone-else")),
    "wrong_iss": lambda: sign(claims(iss="https://evil.example")),
    "expired": lambda: sign(claims(iat=int(time.time()) - 600, exp=int(time.time()) - 60)),
    "future_nbf": lambda: sign(claims(nbf=int(time.time()) + 600)),
    "unknown_kid": lambda: sign(claims(), kid="no-such-key"),
    "foreign_key": lambda: sign(claims(), key=Ed25519PrivateKey.generate()),
    "missing_tenant": lambda: sign(claims(tenant=None)),
    "unknown_tenant": lambda: sign(claims(tenant="nobody")),
    "unknown_role": lambda: sign(claims(role="root")),
    "oversized": lambda: sign(claims(padding="x" * 5000)),
    "garbage": lambda: "eyJhbGciOi.garbage.garbage",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_TOKENS))
def test_hostile_tokens_are_401_without_detail(api, alpha, name):
    token = HOSTILE_TOKENS[name]()
    response = api(token).get("/auth/whoami")
    assert response.status_code == 401, name
    assert response.json()["error"]["message"] == "Invalid credentials."
