"""API keys: made, hashed and checked.

A key looks like ``cba_<prefix>_<secret>``. The prefix finds the row (an indexed lookup); the
whole key is stored only as HMAC-SHA256 with a server secret and compared in constant time, so a
flood of random keys costs one index probe each and a leaked database gives no usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

from django.conf import settings

KEY_PREFIX = "cba"
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_KEY_RE = re.compile(r"^cba_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")


def generate_api_key() -> tuple[str, str]:
    """Return ``(full_key, prefix)``. The full key is shown once and never stored."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(12))
    return f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}", prefix


def hash_api_key(key: str) -> str:
    return hmac.new(settings.API_KEY_HMAC_SECRET.encode(), key.encode(), hashlib.sha256).hexdigest()


def split_api_key(key: str) -> str | None:
    """The prefix of a well-formed key, or None: malformed keys never reach the database."""
    match = _KEY_RE.match(key)
    return match.group(1) if match else None


def api_key_matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key(key), stored_hash)


def looks_like_api_key(value: str) -> bool:
    return value.startswith(f"{KEY_PREFIX}_")
