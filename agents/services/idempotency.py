"""Idempotency keys (Stripe's contract): the first response to a key is stored and replayed;
the same key with a different request is refused; concurrent repeats start one piece of work.

All functions run in the current schema (the request's tenant), so keys of two tenants never
meet; ``scope`` (the principal) separates the callers within a tenant.

Concurrency: the (scope, key) row is inserted *before* the work starts, in its own committed
transaction. A concurrent repeat's INSERT waits on the unique index until that commit, fails,
and finds the pending row: it never starts a second execution. A pending row whose owner died
(its lease passed) is taken over by exactly one later request (conditional UPDATE).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import IdempotencyRecord, IdempotencyState
from config.errors import Conflict

# Keys are kept at least this long (Stripe: 24 h); older ones are treated as unused.
DEFAULT_TTL_HOURS = 24


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


def ttl() -> dt.timedelta:
    return dt.timedelta(hours=float(getattr(settings, "IDEMPOTENCY_TTL_HOURS", DEFAULT_TTL_HOURS)))


def lease() -> dt.timedelta:
    """How long a pending key stays locked to its owner: the longest run a request may ask
    for, plus a margin for storing it."""
    return dt.timedelta(seconds=float(settings.AGENT_MAX_TIMEOUT_SECONDS) + 60)


def request_fingerprint(*, method: str, path: str, body: Any, scope: str) -> str:
    """sha256 over method, path, the body as canonical JSON (sorted keys) and the scope."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256()
    for part in (method.upper(), path, canonical, scope):
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()


@dataclass(frozen=True)
class Claim:
    record: IdempotencyRecord
    # True: this request owns the key and must produce (and store) the response.
    owned: bool


def _insert(
    *, scope: str, key: str, fingerprint: str, method: str, path: str
) -> IdempotencyRecord | None:
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                scope=scope,
                key=key,
                fingerprint=fingerprint,
                method=method[:8],
                path=path[:500],
                locked_until=timezone.now() + lease(),
            )
    except IntegrityError:
        return None


def idempotency_claim(*, scope: str, key: str, fingerprint: str, method: str, path: str) -> Claim:
    """Claim ``key`` for this request, or find the request that already holds it.

    Raises :class:`IdempotencyKeyReused` (409) when the key was used for another request.
    """
    for _ in range(2):
        record = _insert(scope=scope, key=key, fingerprint=fingerprint, method=method, path=path)
        if record is not None:
            return Claim(record, owned=True)
        record = IdempotencyRecord.objects.filter(scope=scope, key=key).first()
        if record is None:
            continue  # deleted between our INSERT and SELECT (expired or released): retry
        now = timezone.now()
        if record.created_at < now - ttl():
            # Past its lifetime: the key may be used afresh (one request deletes it).
            IdempotencyRecord.objects.filter(pk=record.pk, created_at=record.created_at).delete()
            continue
        if record.fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "Idempotency-Key: already used for a different request",
                details={"Idempotency-Key": ["used with a different request body or path"]},
            )
        if record.state == IdempotencyState.PENDING and (
            record.locked_until is not None and record.locked_until < now
        ):
            taken = IdempotencyRecord.objects.filter(
                pk=record.pk, state=IdempotencyState.PENDING, locked_until=record.locked_until
            ).update(locked_until=now + lease())
            if taken:
                record.refresh_from_db()
                return Claim(record, owned=True)
        return Claim(record, owned=False)
    raise Conflict("Idempotency-Key: the key is changing hands; retry")


def idempotency_get(record_id: int) -> IdempotencyRecord | None:
    return IdempotencyRecord.objects.filter(pk=record_id).first()


def idempotency_set_execution(*, record: IdempotencyRecord, execution_id: str) -> None:
    """Remember the execution a pending key started (before its response is known)."""
    IdempotencyRecord.objects.filter(pk=record.pk).update(execution_id=execution_id)
    record.execution_id = execution_id


def idempotency_complete(
    *,
    record: IdempotencyRecord,
    status_code: int,
    body: Any,
    headers: dict[str, str],
    execution_id: str = "",
) -> None:
    """Store the response to replay. Only the owner of a pending record completes it."""
    fields: dict[str, Any] = {
        "state": IdempotencyState.COMPLETED,
        "status_code": status_code,
        "response_body": body,
        "response_headers": headers,
        "completed_at": timezone.now(),
        "locked_until": None,
    }
    if execution_id:
        fields["execution_id"] = execution_id
    IdempotencyRecord.objects.filter(pk=record.pk, state=IdempotencyState.PENDING).update(**fields)


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """Forget a pending key whose request failed unexpectedly, so that a retry may run."""
    IdempotencyRecord.objects.filter(pk=record.pk, state=IdempotencyState.PENDING).delete()


def idempotency_purge(*, older_than: dt.timedelta | None = None) -> int:
    """Delete records past their lifetime (a periodic job should call this per tenant)."""
    cutoff = timezone.now() - (older_than if older_than is not None else ttl())
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
