"""Reading audit logs: chain checks and exports. Callers name the schema."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from django.db import models
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
