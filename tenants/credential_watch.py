"""Noticing, for long-lived connections, that the credential behind them no longer holds.

A WebSocket authenticates once; an API key revoked (or expired) afterwards, or a tenant
suspended, must still end the connections it opened. Each process keeps one watcher per event
loop that looks, every ``WS_CREDENTIAL_CHECK_SECONDS``, at the keys and tenants of all its
watched connections in one pair of queries (not one per connection: 10,000 sockets cost the
same two statements), and tells the lapsed ones why.

Tokens carry their own expiry (the consumer times it); a token minted by an API key is watched
through that key.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django_tenants.utils import schema_context

from tenants.models import ApiKey, Tenant, TenantStatus
from tenants.principals import Principal

logger = logging.getLogger(__name__)

Lapsed = Callable[[str], None]


class CredentialWatch:
    """One watched connection; ``close()`` when it ends."""

    def __init__(self, watcher: _Watcher, principal: Principal, on_lapsed: Lapsed) -> None:
        self._watcher = watcher
        self.principal = principal
        self.on_lapsed = on_lapsed

    def close(self) -> None:
        self._watcher.watches.discard(self)


def _lapsed(key_ids: set[str], tenant_ids: set[int]) -> tuple[set[str], set[int]]:
    with schema_context("public"):
        keys = (
            {
                str(pk)
                for pk in ApiKey.objects.filter(pk__in=key_ids)
                .filter(Q(revoked_at__isnull=False) | Q(expires_at__lte=timezone.now()))
                .values_list("pk", flat=True)
            }
            if key_ids
            else set()
        )
        tenants = set(
            Tenant.objects.filter(pk__in=tenant_ids)
            .exclude(status=TenantStatus.ACTIVE)
            .values_list("pk", flat=True)
        )
    return keys, tenants


class _Watcher:
    def __init__(self) -> None:
        self.watches: set[CredentialWatch] = set()
        self.task: asyncio.Task[None] | None = None

    def add(self, watch: CredentialWatch) -> None:
        self.watches.add(watch)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._loop(), name="credential-watch")

    async def _loop(self) -> None:
        while self.watches:
            await asyncio.sleep(settings.WS_CREDENTIAL_CHECK_SECONDS)
            watches = list(self.watches)
            keys = {w.principal.api_key_id for w in watches if w.principal.api_key_id}
            tenants = {w.principal.tenant_id for w in watches}
            try:
                dead_keys, dead_tenants = await sync_to_async(_lapsed, thread_sensitive=True)(
                    keys, tenants
                )
            except Exception:  # the database is away: look again next time
                logger.debug("credential check failed", exc_info=True)
                continue
            for watch in watches:
                principal = watch.principal
                if principal.tenant_id in dead_tenants:
                    reason = "This tenant is suspended."
                elif principal.api_key_id in dead_keys:
                    reason = "The credential was revoked or has expired."
                else:
                    continue
                self.watches.discard(watch)
                watch.on_lapsed(reason)


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watcher] = (
    weakref.WeakKeyDictionary()
)


def watch_credential(principal: Principal, on_lapsed: Lapsed) -> CredentialWatch:
    """Call ``on_lapsed(reason)`` (once) when ``principal``'s key lapses or its tenant is
    suspended. Must be called from the running event loop."""
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(loop)
    if watcher is None:
        watcher = _watchers[loop] = _Watcher()
    watch = CredentialWatch(watcher, principal, on_lapsed)
    watcher.add(watch)
    return watch
