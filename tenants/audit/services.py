"""Writing audit entries. Callers name the schema: audit entries are written from middleware
(before any tenant is set on the connection) and from background code alike."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest
from django_tenants.utils import schema_context

from config.middleware import request_id_for
from tenants.audit.models import AuditLog, AuditOutcome
from tenants.models import PlatformAuditLog

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Request-derived text kept in an entry's details (paths, reasons, user agents, an address that
# did not parse): enough to read, too little to let a caller fill the log with one request.
MAX_DETAIL_CHARS = 256
MAX_UNPARSED_CLIENT_CHARS = 64


# ---- the client's address ----


@dataclass(frozen=True)
class ClientAddress:
    """``address``: a normalised IP, or None. ``unparsed``: the text that stood where the
    address should have been, when it was not one (kept for the audit entry's details)."""

    address: str | None
    unparsed: str | None = None


@functools.lru_cache(maxsize=16)
def _networks(spec: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    # Keyed by the setting's value, so a changed setting (tests, reloads) is never served stale.
    return tuple(ipaddress.ip_network(item) for item in spec)


def _parse_ip(raw: str) -> IPAddress | None:
    value = raw.strip()
    if value.startswith("["):  # "[2001:db8::1]:443"
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # "203.0.113.9:5555": some proxies append the port
        value = value.partition(":")[0]
    # A zone id ("fe80::1%eth0") names an interface of the proxy, not the client, and the
    # database's inet type refuses it.
    value = value.partition("%")[0]
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # "::ffff:203.0.113.9" is the IPv4 client seen by a dual stack
    return ip


def _trusted(ip: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def resolve_client(meta: Mapping[str, str]) -> ClientAddress:
    """The client of a request from its ``REMOTE_ADDR`` and ``X-Forwarded-For``.

    ``X-Forwarded-For`` is anyone's to write, so it counts only when the peer is one of
    ``TRUSTED_PROXIES``; then the client is the right-most hop that is not itself a trusted
    proxy (everything left of it came from the client and may be forged). A hop that does not
    parse ends the walk: the client is unknown, and nothing left of the garbage is believed.
    """
    remote_raw = str(meta.get("REMOTE_ADDR") or "")
    remote = _parse_ip(remote_raw)
    if remote is None:
        return ClientAddress(None, remote_raw[:MAX_UNPARSED_CLIENT_CHARS] or None)
    trusted = _networks(tuple(settings.TRUSTED_PROXIES))
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if not trusted or not forwarded or not _trusted(remote, trusted):
        return ClientAddress(str(remote))
    client = remote
    for hop in reversed(str(forwarded).split(",")):
        ip = _parse_ip(hop)
        if ip is None:
            return ClientAddress(None, hop.strip()[:MAX_UNPARSED_CLIENT_CHARS] or "(empty hop)")
        client = ip
        if not _trusted(ip, trusted):
            break
    # Every hop a trusted proxy: the left-most one is the nearest to the client we know.
    return ClientAddress(str(client))


def client_address(meta: Mapping[str, str]) -> str | None:
    """The client's IP address (normalised), or None when it is unknown or does not parse.

    ``meta`` is ``request.META`` for HTTP, or :func:`scope_meta` of a WebSocket scope: one rule
    for both transports.
    """
    return resolve_client(meta).address


def scope_meta(scope: Mapping[str, Any]) -> dict[str, str]:
    """What :func:`client_address` reads, taken from an ASGI scope and named as in
    ``request.META`` (repeated ``X-Forwarded-For`` headers are joined, as Django does)."""
    client = scope.get("client")
    meta = {"REMOTE_ADDR": str(client[0]) if client else ""}
    forwarded = [
        bytes(value).decode("latin1")
        for name, value in scope.get("headers", ())
        if bytes(name).lower() == b"x-forwarded-for"
    ]
    if forwarded:
        meta["HTTP_X_FORWARDED_FOR"] = ",".join(forwarded)
    return meta


def _checked_client(client: str | None) -> ClientAddress:
    """A client address handed over by a caller, checked before it reaches the inet column
    (which refuses garbage with an error that would cost the entry)."""
    if not client:
        return ClientAddress(None)
    ip = _parse_ip(client)
    if ip is None:
        return ClientAddress(None, client[:MAX_UNPARSED_CLIENT_CHARS])
    return ClientAddress(str(ip))


# ---- entries ----


def _bounded(details: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value[:MAX_DETAIL_CHARS] if isinstance(value, str) else value
        for key, value in details.items()
    }


def _entry_fields(
    *,
    actor: str,
    action: str,
    outcome: str,
    target_type: str,
    target_id: str,
    request: HttpRequest | None,
    details: dict[str, Any] | None,
    client: str | None,
    request_id: str,
) -> dict[str, Any]:
    resolved = resolve_client(request.META) if request is not None else _checked_client(client)
    entry_details = _bounded(details or {})
    if resolved.unparsed is not None:
        entry_details["client_unparsed"] = resolved.unparsed
    return {
        "actor": actor[:200],
        "action": action[:100],
        "outcome": outcome,
        "target_type": target_type[:50],
        "target_id": str(target_id)[:100],
        "ip_address": resolved.address,
        "request_id": (request_id_for(request) if request is not None else request_id)[:128],
        "details": entry_details,
    }


def _entered(schema_name: str) -> AbstractContextManager[object]:
    # django-tenants forgets the search_path it set on every set_schema, even to the same
    # schema: entering the schema the connection is already on would cost a SET per entry
    # (on the execution hot path, the admission is already in the tenant's schema).
    if getattr(connection, "schema_name", None) == schema_name:
        return contextlib.nullcontext()
    return schema_context(schema_name)


def audit_record(
    *,
    schema_name: str,
    actor: str,
    action: str,
    outcome: str = AuditOutcome.SUCCESS,
    target_type: str = "",
    target_id: str = "",
    request: HttpRequest | None = None,
    details: dict[str, Any] | None = None,
    client: str | None = None,
    request_id: str = "",
) -> AuditLog:
    """Append an entry to ``schema_name``'s audit log (one INSERT; the database chains it).

    The client address and request id come from ``request`` when one is given, else from
    ``client`` and ``request_id``. An address that does not parse is stored as null (with the
    offending text, truncated, in ``details["client_unparsed"]``): it never costs the entry.
    Top-level text in ``details`` is truncated to ``MAX_DETAIL_CHARS``.

    The chain's trigger holds a per-schema lock until the caller's transaction ends: inside a
    longer transaction, write the entry last.
    """
    if not schema_name or schema_name == "public":
        raise ValueError("audit entries belong to a tenant schema")
    entry = audit_entry(
        actor=actor,
        action=action,
        outcome=outcome,
        target_type=target_type,
        target_id=target_id,
        request=request,
        details=details,
        client=client,
        request_id=request_id,
    )
    with _entered(schema_name):
        entry.save(force_insert=True)
    return entry


def audit_entry(
    *,
    actor: str,
    action: str,
    outcome: str = AuditOutcome.SUCCESS,
    target_type: str = "",
    target_id: str = "",
    request: HttpRequest | None = None,
    details: dict[str, Any] | None = None,
    client: str | None = None,
    request_id: str = "",
) -> AuditLog:
    """An entry as :func:`audit_record` would write it, not yet saved: for a caller that
    inserts it together with other rows (``config.sql.insert_together``), in a tenant schema,
    last in its transaction."""
    return AuditLog(
        **_entry_fields(
            actor=actor,
            action=action,
            outcome=outcome,
            target_type=target_type,
            target_id=target_id,
            request=request,
            details=details,
            client=client,
            request_id=request_id,
        )
    )


def platform_audit_record(
    *,
    actor: str,
    action: str,
    outcome: str = AuditOutcome.SUCCESS,
    target_type: str = "",
    target_id: str = "",
    request: HttpRequest | None = None,
    details: dict[str, Any] | None = None,
    client: str | None = None,
    request_id: str = "",
) -> PlatformAuditLog:
    """Append an entry to the platform's audit log (public schema); arguments as for
    :func:`audit_record`. For events of the platform itself: tenants created, suspended or
    moved to another plan, plans changed, platform-admin writes and logins."""
    fields = _entry_fields(
        actor=actor,
        action=action,
        outcome=outcome,
        target_type=target_type,
        target_id=target_id,
        request=request,
        details=details,
        client=client,
        request_id=request_id,
    )
    with _entered("public"):
        return PlatformAuditLog.objects.create(**fields)


# ---- refused credentials ----


@dataclass
class _Bucket:
    tokens: float
    updated: float
    suppressed: int = 0


class AuthFailureBudget:
    """A token bucket per tenant schema, in this process: ``per_minute`` entries at once, then
    ``per_minute`` a minute. What the bucket refuses is counted, and the count travels with the
    next entry written, so the log still says how much happened."""

    # Buckets of tenants that went quiet are dropped past this many (a full bucket with nothing
    # counted carries no information): memory stays bounded however many tenants are named.
    MAX_BUCKETS = 10_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()  # ASGI and WSGI servers call this from many threads
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, schema_name: str, per_minute: int) -> int | None:
        """None if the entry is not to be written (it is counted instead); otherwise how many
        were counted since the tenant's last written entry."""
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(schema_name)
            if bucket is None:
                self._prune(per_minute, now)
                bucket = self._buckets[schema_name] = _Bucket(float(per_minute), now)
            refill = (now - bucket.updated) * per_minute / 60
            bucket.tokens = min(float(per_minute), bucket.tokens + max(refill, 0.0))
            bucket.updated = now
            if bucket.tokens < 1:
                bucket.suppressed += 1
                if bucket.suppressed == 1:
                    logger.warning(
                        "more than %d unproven authentication failures a minute name tenant "
                        "schema %s; counting the rest instead of writing them",
                        per_minute,
                        schema_name,
                    )
                return None
            bucket.tokens -= 1
            suppressed, bucket.suppressed = bucket.suppressed, 0
            return suppressed

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def _prune(self, per_minute: int, now: float) -> None:
        if len(self._buckets) < self.MAX_BUCKETS:
            return
        for name, bucket in list(self._buckets.items()):
            refilled = bucket.tokens + (now - bucket.updated) * per_minute / 60 >= per_minute
            if refilled and not bucket.suppressed:
                del self._buckets[name]


auth_failure_budget = AuthFailureBudget()


def audit_auth_failure(
    *,
    schema_name: str,
    reason: str,
    proven: bool,
    path: str,
    client: str | None,
    transport: str,
    request_id: str = "",
    user_agent: str = "",
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Audit a refused credential (HTTP, WebSocket, any transport) in the log of the tenant
    it concerns: one call, so that every transport keeps the same rules.

    ``proven``: the credential's secret was verified, so the tenant is certain (a revoked or
    expired key given with its right secret, a validly signed token with an unknown role or
    minted by a revoked or expired key). Those are always written.

    Anything else names the tenant on the caller's word alone: a known key prefix with a wrong
    secret, a token's unverified tenant claim, garbage on a tenant's host, another tenant's
    credential on this tenant's host. Anyone can send those by the million, and the log is
    append-only, so they are sampled: at most ``AUDIT_AUTH_FAILURES_PER_MINUTE`` entries per
    tenant per minute in each process; the rest are counted, and the next entry written
    carries the count in ``details["suppressed"]``.

    ``extra`` joins the details (an admin login's username). ``reason``, ``path`` and
    ``user_agent`` are truncated; ``client`` should come from
    :func:`client_address` (anything that does not parse is stored as null).
    """
    details: dict[str, Any] = {
        "reason": reason,
        "path": path,
        "transport": transport,
        "proven": proven,
    }
    if user_agent:
        details["user_agent"] = user_agent
    details.update(extra or {})
    if not proven:
        suppressed = auth_failure_budget.admit(schema_name, settings.AUDIT_AUTH_FAILURES_PER_MINUTE)
        if suppressed is None:
            return
        if suppressed:
            details["suppressed"] = suppressed
    audit_record(
        schema_name=schema_name,
        actor="anonymous",
        action="auth.failure",
        outcome=AuditOutcome.FAILURE,
        client=client,
        request_id=request_id,
        details=details,
    )
