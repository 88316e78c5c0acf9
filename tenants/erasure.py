"""A tenant's data handed to the tenant (export) and a tenant erased (delete).

Export: JSON lines of everything the platform holds for the tenant, for the tenant itself:
its public rows (the tenant, its domains, its API keys without their hash) and every
row of every model of its schema. Secrets never leave: sealed provider keys, extra headers, MCP
auth headers and tool header values, operators' password hashes and session data are written
as ``"[redacted]"`` (an empty value stays empty, so the tenant sees which secrets were set).

Delete: the schema is dropped (the audit log with it: ``DROP SCHEMA`` is not an UPDATE, DELETE
or TRUNCATE) and every public row that belongs to the tenant goes, in one transaction: the
tenant, its domains and API keys, its stream leases, its PostgreSQL rate buckets, its jobs on
the queue (with their events) and the platform admin's change history of those objects. What
stays is the platform's audit log (append-only and hash-chained, by design: the platform's
own record of what it did), which gets a ``tenant.delete`` entry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.utils import timezone
from django_tenants.utils import schema_context
from psycopg import sql

from agents.core.run_config import announce_run_config_change
from agents.models import Agent, AgentVersion
from agents.services.tool_secrets import mask_config_secrets, mask_tool_secrets
from config.errors import Conflict, ValidationFailed
from tenants.audit.services import platform_audit_record
from tenants.backup import private_file
from tenants.models import ApiKey, Domain, RateBucket, StreamLease, Tenant

logger = logging.getLogger(__name__)

REDACTED = "[redacted]"
EXPORT_FORMAT = "circuit-breaker-tenant-export"
EXPORT_VERSION = 1
# Fields holding a secret (or what proves one), whatever model they are on.
SECRET_FIELDS = frozenset({"password", "session_data", "key_hash"})


# ---- export ----


def tenant_models() -> list[type[models.Model]]:
    """Every model whose table is in a tenant schema (many-to-many tables too)."""
    found: list[type[models.Model]] = []
    for label in settings.TENANT_APPS:
        config = next(c for c in apps.get_app_configs() if c.name == label)
        found.extend(config.get_models(include_auto_created=True))
    return found


def _is_secret(f: models.Field[Any, Any]) -> bool:
    return f.name in SECRET_FIELDS or f.name.endswith("_encrypted")


def _masked_sealed(value: Any) -> Any:
    """Anything sealed (``{"sealed": "<kid>$<token>"}``) deep inside JSON, redacted."""
    if isinstance(value, dict):
        if set(value) == {"sealed"}:
            return REDACTED
        return {k: _masked_sealed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked_sealed(v) for v in value]
    return value


def _row(obj: models.Model) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in obj._meta.concrete_fields:
        value = f.value_from_object(obj)
        if _is_secret(f):
            value = REDACTED if value else value
        elif isinstance(f, models.JSONField):
            value = _masked_sealed(value)
        elif isinstance(value, bytes | memoryview):
            value = bytes(value).hex()
        out[f.attname] = value
    if isinstance(obj, Agent):
        out["tools"] = _masked_sealed(mask_tool_secrets(obj.tools))
    elif isinstance(obj, AgentVersion):
        out["config"] = _masked_sealed(mask_config_secrets(obj.config))
    return out


def _line(kind: str, data: dict[str, Any]) -> str:
    return json.dumps({"type": kind, "data": data}, cls=DjangoJSONEncoder, ensure_ascii=False)


def _public_lines(tenant: Tenant) -> Iterator[str]:
    with schema_context("public"):
        yield _line(
            "tenant",
            {
                "slug": tenant.slug,
                "name": tenant.name,
                "status": tenant.status,
                "created_at": tenant.created_at,
                "plan": tenant.plan.slug if tenant.plan is not None else None,
                "log_content": tenant.log_content,
            },
        )
        for domain in Domain.objects.filter(tenant=tenant).order_by("domain"):
            yield _line("domain", {"domain": domain.domain, "is_primary": domain.is_primary})
        for key in ApiKey.objects.filter(tenant=tenant).order_by("created_at"):
            # The prefix is the key's public name (audit entries' actors use it); the hash is
            # never handed out.
            yield _line(
                "api_key",
                {
                    "id": key.id,
                    "prefix": key.prefix,
                    "name": key.name,
                    "role": key.role,
                    "created_at": key.created_at,
                    "created_by": key.created_by,
                    "expires_at": key.expires_at,
                    "revoked_at": key.revoked_at,
                    "last_used_at": key.last_used_at,
                },
            )


@dataclass
class ExportSummary:
    path: Path
    rows: dict[str, int] = field(default_factory=dict)


def tenant_export(*, tenant: Tenant, output: Path, actor: str = "system") -> ExportSummary:
    """Write everything held for ``tenant`` (secrets redacted) to ``output`` as JSON lines:
    ``{"type": "export", ...}`` first, then ``{"type": "<app.model>" | "tenant" | ...,
    "data": {...}}`` per row. Read in one snapshot of the schema."""
    summary = ExportSummary(path=output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = private_file(output.with_name(output.name + ".partial"))
    with partial.open("w", encoding="utf-8") as out:
        head = {"type": "export", "format": EXPORT_FORMAT, "version": EXPORT_VERSION}
        out.write(json.dumps({**head, "created_at": timezone.now().isoformat()}) + "\n")
        for line in _public_lines(tenant):
            out.write(line + "\n")
            summary.rows["public"] = summary.rows.get("public", 0) + 1
        outermost = not connection.in_atomic_block
        with schema_context(tenant.schema_name), transaction.atomic():
            if outermost:
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            for model in tenant_models():
                label = model._meta.label_lower
                count = 0
                for obj in model._base_manager.order_by("pk").iterator(chunk_size=500):
                    out.write(_line(label, _row(obj)) + "\n")
                    count += 1
                summary.rows[label] = count
    partial.replace(output)
    platform_audit_record(
        actor=actor,
        action="tenant.export",
        target_type="tenant",
        target_id=tenant.slug,
        details={"file": output.name, "rows": sum(summary.rows.values())},
    )
    return summary


# ---- delete ----


@dataclass
class DeleteSummary:
    slug: str
    schema_name: str
    public_rows: dict[str, int] = field(default_factory=dict)


def _delete_jobs(schema: str, tenant_id: int, slug: str) -> int:
    """The tenant's jobs (any task whose arguments name its schema or id, or whose lock is
    the tenant's), with their events; refused while one of them runs."""
    # Exact matches only: "t_acme" must not take "t_acme_eu"'s jobs. Locks are
    # "<purpose>:<schema>" (a schema name has no character special to a regex).
    owned = (
        "(EXISTS (SELECT 1 FROM jsonb_each_text(args) AS a WHERE a.value = %(schema)s "
        "OR (a.key IN ('tenant_id', 'tenant') AND a.value IN (%(tenant_id)s, %(slug)s))) "
        "OR lock ~ %(lock)s OR queueing_lock ~ %(lock)s)"
    )
    params = {
        "schema": schema,
        "tenant_id": str(tenant_id),
        "slug": slug,
        "lock": f"(^|:){schema}(:|$)",
    }
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing' AND {owned}",  # noqa: S608 (constant text)
            params,
        )
        row = cursor.fetchone()
        if row is not None and row[0]:
            raise Conflict(
                f"{row[0]} job(s) of the tenant are running: suspend the tenant and let them "
                "end (or cancel them), then delete it"
            )
        cursor.execute(
            f"UPDATE procrastinate_periodic_defers SET job_id = NULL WHERE job_id IN "  # noqa: S608 (constant text)
            f"(SELECT id FROM procrastinate_jobs WHERE {owned})",
            params,
        )
        cursor.execute(f"DELETE FROM procrastinate_jobs WHERE {owned}", params)  # noqa: S608 (constant text)
        return int(cursor.rowcount)


def _delete_admin_history(tenant: Tenant) -> int:
    """The platform admin's change history of the tenant's rows (it repeats their names)."""
    targets: list[tuple[type[models.Model], list[Any]]] = [
        (Tenant, [tenant.pk]),
        (Domain, list(Domain.objects.filter(tenant=tenant).values_list("pk", flat=True))),
        (ApiKey, list(ApiKey.objects.filter(tenant=tenant).values_list("pk", flat=True))),
    ]
    deleted = 0
    for model, pks in targets:
        content_type = ContentType.objects.get_for_model(model)
        deleted += LogEntry.objects.filter(
            content_type=content_type, object_id__in=[str(pk) for pk in pks]
        ).delete()[0]
    return deleted


def tenant_delete(*, tenant: Tenant, confirm: str, actor: str) -> DeleteSummary:
    """Erase ``tenant``: its schema and every public row of it, in one transaction (see the
    module). ``confirm`` must repeat the slug."""
    if confirm != tenant.slug:
        raise ValidationFailed("confirm: repeat the tenant's slug to delete it")
    schema = tenant.schema_name
    if not schema or schema == "public":
        raise ValidationFailed("the public schema is not a tenant")
    summary = DeleteSummary(slug=tenant.slug, schema_name=schema)
    rows = summary.public_rows
    with schema_context("public"), transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        with connection.cursor() as cursor:
            # Waiting behind a long query of the tenant is fine; waiting forever is not.
            cursor.execute("SET LOCAL lock_timeout = '30s'")
        rows["procrastinate_jobs"] = _delete_jobs(schema, tenant.pk, tenant.slug)
        rows["django_admin_log"] = _delete_admin_history(tenant)
        rows["tenants_streamlease"] = StreamLease.objects.filter(tenant_id=tenant.pk).delete()[0]
        rows["tenants_ratebucket"] = RateBucket.objects.filter(
            key__regex=rf"^[a-z]+:[tk]:{tenant.pk}(:|$)"
        ).delete()[0]
        rows["tenants_domain"] = Domain.objects.filter(tenant=tenant).count()
        rows["tenants_apikey"] = ApiKey.objects.filter(tenant=tenant).count()
        Tenant.objects.filter(pk=tenant.pk).delete()  # domains and API keys cascade
        rows["tenants_tenant"] = 1
        with connection.cursor() as cursor:
            # Inside a caller's transaction, foreign-key checks still pending on the schema's
            # tables would make PostgreSQL refuse the DROP: run them now.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
        # DROP SCHEMA fires no trigger: every process forgets the agents it cached for runs
        # (a tenant created later under this schema name must never find them).
        announce_run_config_change(schema)
        # Last: the platform log's chain lock is held until the transaction commits.
        platform_audit_record(
            actor=actor,
            action="tenant.delete",
            target_type="tenant",
            target_id=summary.slug,
            details={"schema": schema, "rows": dict(rows)},
        )
    logger.warning("tenant %s deleted (schema %s dropped) by %s", summary.slug, schema, actor)
    return summary
