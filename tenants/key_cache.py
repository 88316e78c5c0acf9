"""API key rows (with their tenant and plan) cached per process, so that a request with a
known key costs no query to authenticate.

What is cached is the stored row, never a verdict: every request still checks its secret
against the row's hash, the revocation time and the expiry, so a wrong secret, a revoked or an
expired key is refused exactly as without the cache. What the cache can make stale is the row
itself, so every change to a key, a tenant or a plan clears it:

- in the process that made the change, at once (model signals, ``tenants.apps``);
- in every other process at COMMIT, by ``NOTIFY credential_changes`` (a key) or
  ``plan_changes`` (a tenant or plan), which the process's event hub listens to;
- and, should a notification be missed (the hub reconnecting), after
  ``CREDENTIAL_CACHE_SECONDS`` at the latest.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings
from django.db import connection

from tenants.models import ApiKey

CREDENTIAL_CHANGES_CHANNEL = "credential_changes"
# A flood of distinct valid keys must not grow the cache without bound.
MAX_ENTRIES = 10_000

_cache: dict[str, tuple[ApiKey, float]] = {}
_lock = threading.Lock()


def cached_api_key(prefix: str) -> ApiKey | None:
    """The cached row of the key with this prefix (``tenant`` and ``tenant.plan`` loaded), or
    None when it is not cached or too old to trust."""
    hit = _cache.get(prefix)
    if hit is None or time.monotonic() - hit[1] >= settings.CREDENTIAL_CACHE_SECONDS:
        return None
    return hit[0]


def remember_api_key(api_key: ApiKey) -> None:
    with _lock:
        if len(_cache) >= MAX_ENTRIES:
            _cache.clear()  # rare; the next requests simply read their rows again
        _cache[api_key.prefix] = (api_key, time.monotonic())


def forget_credentials(prefix: str | None = None) -> None:
    """Drop one key's row (``prefix``) or every cached row."""
    with _lock:
        if prefix is None:
            _cache.clear()
        else:
            _cache.pop(prefix, None)


def announce_credential_change(prefix: str) -> None:
    """Clear the key here now and in every other process at COMMIT."""
    forget_credentials(prefix)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CREDENTIAL_CHANGES_CHANNEL, prefix])
