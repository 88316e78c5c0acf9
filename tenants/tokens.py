"""Tenant JWTs: issued in exchange for an API key, verified on every request that carries one.

Rules (RFC 8725): the algorithm is fixed by the server and never taken from the token; ``exp``,
``iat``, ``iss``, ``aud``, ``sub``, ``jti``, ``tenant`` and ``role`` are required; the ``kid``
must name a key of the ring; oversized tokens are refused before parsing.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from django.conf import settings

from tenants.signing import ALGORITHM, key_ring

MAX_TOKEN_BYTES = 4096
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti", "tenant", "role"]


class InvalidToken(Exception):
    """The token is not acceptable. The message is for logs, never for the client."""


def issue_token(
    *,
    tenant_slug: str,
    role: str,
    subject: str,
    ttl_seconds: int,
    not_after: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """Sign a token for ``ttl_seconds``, but never past ``not_after`` (epoch seconds): a token
    must not outlive the credential it was exchanged for."""
    ring = key_ring()
    now = int(time.time())
    exp = now + ttl_seconds if not_after is None else min(now + ttl_seconds, not_after)
    claims: dict[str, Any] = {
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "sub": subject,
        "tenant": tenant_slug,
        "role": role,
        "iat": now,
        "nbf": now,
        "exp": exp,
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(
        claims, ring.private_key, algorithm=ALGORITHM, headers={"kid": ring.active_kid}
    )
    return token, claims


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and value.startswith("eyJ")


def unverified_tenant_claim(token: str) -> str | None:
    """The tenant a token *claims*, before any check: used only to file an audit entry."""
    if len(token) > MAX_TOKEN_BYTES:
        return None
    try:
        claim = jwt.decode(token, options={"verify_signature": False}).get("tenant")
    except jwt.PyJWTError:
        return None
    return claim if isinstance(claim, str) else None


def verify_token(token: str) -> dict[str, Any]:
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidToken("token too large")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"bad header: {exc}") from None
    if header.get("alg") != ALGORITHM:
        raise InvalidToken(f"algorithm {header.get('alg')!r} refused")
    key = key_ring().public_keys.get(str(header.get("kid", "")))
    if key is None:
        raise InvalidToken("unknown kid")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
            options={"require": REQUIRED_CLAIMS, "verify_nbf": True},
            leeway=5,
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None
    if not all(isinstance(claims.get(name), str) for name in ("sub", "tenant", "role", "jti")):
        raise InvalidToken("claims of the wrong type")
    return claims
