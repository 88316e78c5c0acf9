"""Idempotency keys (Stripe's contract), for every interface that starts runs.

What a key produces is an *execution* (or a refusal): a repeat with the same key and the same
request gets that execution back (a blocking caller waits for it and reads its result, a
streaming caller streams its log from the start, a background caller gets its current state);
a repeat with another request is refused (409 ``idempotency_key_reused``); a refusal (4xx) is
stored and replayed too. Keys live ``IDEMPOTENCY_TTL_HOURS``; they are scoped to the tenant
(schema) and to the caller's credential (a token shares its API key's scope).

Concurrency: the (scope, key) row is inserted naming the new execution *in the same
transaction* that creates the execution. A concurrent repeat's INSERT waits on the unique index
until that commit, fails, and finds the row: one execution, one upstream call. A repeat never
waits holding a database connection: it waits on the execution's event log (LISTEN), which
holds none.

Functions are sync and run in the current (tenant) schema.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import IdempotencyRecord, IdempotencyState
from config.errors import Conflict, DomainError, ValidationFailed
from tenants.principals import Principal

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class IdempotencyInProgress(Conflict):
    code = "idempotency_in_progress"

    def __init__(self) -> None:
        super().__init__(
            "A request with this Idempotency-Key is still being processed; retry later.",
            headers={"Retry-After": "1"},
        )


class ReplayedRefusal(DomainError):
    """The refusal the key's first request got, raised again for its repeat."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message, details=details, headers={REPLAYED_HEADER: "true"})
        self.status = status
        self.code = code


@dataclass(frozen=True)
class IdempotencyKey:
    scope: str
    key: str
    fingerprint: str


def idempotency_scope(principal: Principal) -> str:
    # A token minted from an API key acts for that key: both share its idempotency keys.
    if principal.api_key_id:
        return f"api_key:{principal.api_key_id}"
    return principal.audit_actor


def parse_idempotency_key(raw: str | None) -> str | None:
    """The key as sent (header, message field), or None; ``ValidationFailed`` when malformed."""
    if raw is None:
        return None
    key = raw.strip()
    if not _KEY_RE.match(key):
        message = "1 to 255 visible ASCII characters"
        raise ValidationFailed(f"{HEADER}: {message}", details={HEADER: [message]})
    return key


def ttl() -> dt.timedelta:
    return dt.timedelta(hours=float(settings.IDEMPOTENCY_TTL_HOURS))


@dataclass(frozen=True)
class Prior:
    """What a key already produced: an execution, or a refusal."""

    execution_id: str
    refusal: ReplayedRefusal | None = None


def _prior(record: IdempotencyRecord) -> Prior:
    if record.execution_id:
        return Prior(record.execution_id)
    if record.status_code and isinstance(record.response_body, dict):
        body = record.response_body
        nested = body.get("error")
        error = nested if isinstance(nested, dict) else body
        return Prior(
            "",
            ReplayedRefusal(
                record.status_code,
                str(error.get("code", "error")),
                str(error.get("message", "")),
                dict(error.get("details") or {}),
            ),
        )
    # A record of an older release still waiting for its response.
    raise IdempotencyInProgress()


def _insert(key: IdempotencyKey, **answer: Any) -> bool:
    """Store the key with what it produced (``execution_id``, or a refusal's ``status_code`` and
    ``response_body``); False when the key is already taken (a savepoint keeps the caller's
    transaction usable)."""
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(
                scope=key.scope,
                key=key.key,
                fingerprint=key.fingerprint,
                method="RUN",
                path="",
                state=IdempotencyState.COMPLETED,
                completed_at=timezone.now(),
                **answer,
            )
    except IntegrityError:
        return False
    return True


def reserve(key: IdempotencyKey, *, execution_id: str) -> Prior | None:
    """Claim ``key`` for the execution about to be created (inside the caller's transaction).
    None: the key is ours. Otherwise what it already produced; ``IdempotencyKeyReused`` (409)
    when it was used for another request."""
    for _ in range(3):
        if _insert(key, execution_id=execution_id):
            return None
        record = IdempotencyRecord.objects.filter(scope=key.scope, key=key.key).first()
        if record is None:
            continue  # deleted between our INSERT and SELECT (expired): try again
        now = timezone.now()
        if record.created_at < now - ttl():
            # Past its lifetime: the key may be used afresh.
            IdempotencyRecord.objects.filter(pk=record.pk, created_at=record.created_at).delete()
            continue
        if record.fingerprint != key.fingerprint:
            raise IdempotencyKeyReused(
                f"{HEADER}: already used for a different request",
                details={HEADER: ["used with a different request"]},
            )
        if (
            record.state == IdempotencyState.PENDING
            and record.locked_until is not None
            and record.locked_until < now
        ):
            # An older release's request that died before answering: take the key over.
            IdempotencyRecord.objects.filter(pk=record.pk, state=IdempotencyState.PENDING).delete()
            continue
        return _prior(record)
    raise IdempotencyInProgress()


def record_refusal(key: IdempotencyKey, error: DomainError) -> None:
    """Remember that the key's request was refused, so that its repeats get the same answer.
    When the key already holds an answer, raise that instead (a replay, or 409 for a key used
    with another request)."""
    body = {"error": {"code": error.code, "message": error.message, "details": error.details}}
    if _insert(key, status_code=error.status, response_body=body):
        return
    record = IdempotencyRecord.objects.filter(scope=key.scope, key=key.key).first()
    if record is None or record.created_at < timezone.now() - ttl():
        return  # expired meanwhile: nothing to replay, the refusal stands
    if record.fingerprint != key.fingerprint:
        raise IdempotencyKeyReused(
            f"{HEADER}: already used for a different request",
            details={HEADER: ["used with a different request"]},
        )
    prior = _prior(record)
    if prior.refusal is not None:
        raise prior.refusal


def body_fingerprint(*, agent_ref: str, mode: str | None, body: Any) -> str:
    """sha256 of what a caller sent (agent, the transport's mode, the body as canonical JSON
    with sorted keys): the same request in another key order is the same request."""
    canonical = json.dumps(
        {"agent": agent_ref, "mode": mode or "", "body": body},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_purge(*, older_than: dt.timedelta | None = None) -> int:
    """Delete records past their lifetime (the hourly job calls this per tenant)."""
    cutoff = timezone.now() - (older_than if older_than is not None else ttl())
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
