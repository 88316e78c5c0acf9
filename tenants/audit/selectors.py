"""Reading audit logs: chain checks and exports. Callers name the schema."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils.dateparse import parse_date, parse_datetime
from django_tenants.utils import schema_context

from tenants.audit.chain import ChainReport, first_break
from tenants.audit.models import AuditLog
from tenants.models import PlatformAuditLog

TENANT_TABLE = "audit_auditlog"
PLATFORM_TABLE = "tenants_platformauditlog"

# What an exported line holds, in this order: everything the hash covers, the hashes, the id.
EXPORT_FIELDS = (
    "id",
    "created_at",
    "actor",
    "action",
    "outcome",
    "target_type",
    "target_id",
    "ip_address",
    "request_id",
    "details",
    "prev_hash",
    "entry_hash",
)


def audit_chain_check(*, schema_name: str) -> ChainReport:
    """Check the chain of ``schema_name``'s audit log (one statement, in the database)."""
    return first_break(schema=schema_name, table=TENANT_TABLE)


def platform_chain_check() -> ChainReport:
    """Check the chain of the platform's audit log."""
    return first_break(schema="public", table=PLATFORM_TABLE)


def entry_as_dict(entry: models.Model) -> dict[str, Any]:
    """One entry as plain JSON values (created_at in UTC ISO 8601, microseconds kept)."""
    row: dict[str, Any] = {name: getattr(entry, name) for name in EXPORT_FIELDS}
    row["created_at"] = row["created_at"].astimezone(dt.UTC).isoformat()
    return row


def export_rows(
    queryset: models.QuerySet[Any],
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Entries of an audit model in chain (id) order, ``since`` ≤ created_at < ``until``."""
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    if until is not None:
        queryset = queryset.filter(created_at__lt=until)
    for entry in queryset.order_by("id").iterator(chunk_size=2000):
        yield entry_as_dict(entry)


def audit_export_rows(
    *, schema_name: str, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> Iterator[dict[str, Any]]:
    """``schema_name``'s entries for :func:`export_rows`, read inside its schema."""
    with schema_context(schema_name):
        yield from export_rows(AuditLog.objects.all(), since=since, until=until)


def platform_export_rows(
    *, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> Iterator[dict[str, Any]]:
    """The platform log's entries for :func:`export_rows`."""
    with schema_context("public"):
        yield from export_rows(PlatformAuditLog.objects.all(), since=since, until=until)


# ---- the log as the API pages it ----

MAX_PAGE = 500
DEFAULT_PAGE = 50
QUERY_PARAMETERS = frozenset(
    {"actor", "action", "target_type", "target_id", "since", "until", "cursor", "limit"}
)


class BadAuditQuery(ValueError):
    """``parameter``: the query parameter that was wrong; the message says how."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


def parse_instant(value: str) -> dt.datetime:
    """An ISO 8601 date or date-time; UTC when it names no zone. ValueError otherwise."""
    try:
        parsed = parse_datetime(value)
        if parsed is None:
            day = parse_date(value)
            parsed = dt.datetime.combine(day, dt.time()) if day is not None else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValueError(f"not an ISO 8601 date or date-time: {value[:60]!r}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def encode_cursor(created_at: dt.datetime, entry_id: int) -> str:
    raw = json.dumps([created_at.astimezone(dt.UTC).isoformat(), entry_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    """The position a cursor names; BadAuditQuery for anything not made by
    :func:`encode_cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, entry_id = json.loads(raw)
        position = dt.datetime.fromisoformat(created)
        if not isinstance(entry_id, int) or position.tzinfo is None:
            raise ValueError(cursor)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise BadAuditQuery("cursor", "not a cursor this endpoint gave out") from None
    return position, entry_id


@dataclass(frozen=True)
class AuditQuery:
    actor: str | None = None
    action: str | None = None  # exact, or "prefix.*"
    target_type: str | None = None
    target_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    after: tuple[dt.datetime, int] | None = None  # from the cursor
    limit: int = DEFAULT_PAGE


def audit_query_from_params(params: Mapping[str, str]) -> AuditQuery:
    """Check a caller's query parameters; :class:`BadAuditQuery` names the first bad one."""
    for name in params:
        if name not in QUERY_PARAMETERS:
            raise BadAuditQuery(name, "unknown parameter")

    def text(name: str, max_chars: int) -> str | None:
        value = params.get(name)
        if value is None:
            return None
        if not value or len(value) > max_chars:
            raise BadAuditQuery(name, f"must be 1 to {max_chars} characters")
        return value

    action = text("action", 100)
    if action is not None and "*" in action.removesuffix(".*"):
        raise BadAuditQuery("action", 'an exact action, or a prefix ending in ".*"')
    target_type, target_id = text("target_type", 50), text("target_id", 100)
    if target_id is not None and target_type is None:
        raise BadAuditQuery("target_id", "needs target_type")
    bounds: dict[str, dt.datetime | None] = {}
    for name in ("since", "until"):
        value = params.get(name)
        try:
            bounds[name] = parse_instant(value) if value is not None else None
        except ValueError as exc:
            raise BadAuditQuery(name, str(exc)) from None
    since, until = bounds["since"], bounds["until"]
    if since is not None and until is not None and since >= until:
        raise BadAuditQuery("until", "must be after since")
    try:
        limit = int(params.get("limit", DEFAULT_PAGE))
    except ValueError:
        raise BadAuditQuery("limit", "must be an integer") from None
    if not 1 <= limit <= MAX_PAGE:
        raise BadAuditQuery("limit", f"must be between 1 and {MAX_PAGE}")
    cursor = params.get("cursor")
    return AuditQuery(
        actor=text("actor", 200),
        action=action,
        target_type=target_type,
        target_id=target_id,
        since=since,
        until=until,
        after=decode_cursor(cursor) if cursor is not None else None,
        limit=limit,
    )


def audit_page(query: AuditQuery) -> tuple[list[AuditLog], str | None]:
    """One page of the connection's tenant log, newest first ((created_at, id) descending),
    and the cursor of the next page (None on the last). Keyset paging: a page costs the
    same however deep it is, and entries written meanwhile never shift it."""
    entries = AuditLog.objects.all()
    if query.actor is not None:
        entries = entries.filter(actor=query.actor)
    if query.action is not None:
        if query.action.endswith(".*"):
            entries = entries.filter(action__startswith=query.action[:-1])
        else:
            entries = entries.filter(action=query.action)
    if query.target_type is not None:
        entries = entries.filter(target_type=query.target_type)
    if query.target_id is not None:
        entries = entries.filter(target_id=query.target_id)
    if query.since is not None:
        entries = entries.filter(created_at__gte=query.since)
    if query.until is not None:
        entries = entries.filter(created_at__lt=query.until)
    if query.after is not None:
        created, entry_id = query.after
        entries = entries.filter(Q(created_at__lt=created) | Q(created_at=created, id__lt=entry_id))
    page = list(entries.order_by("-created_at", "-id")[: query.limit + 1])
    if len(page) <= query.limit:
        return page, None
    page = page[: query.limit]
    return page, encode_cursor(page[-1].created_at, page[-1].pk)
