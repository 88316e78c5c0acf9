"""Backup and restore of one tenant's schema, as a logical dump made by the database itself.

Why this mechanism: ``pg_dump --schema`` is exact, but it needs the binary (absent beside the
embedded database the platform falls back to, and tied to the server's major version), and a
dump names its schema in every statement, so restoring into another tenant means rewriting
SQL text. Here every table of the schema is copied with ``COPY ... TO STDOUT`` (PostgreSQL's
own text format, exact for every type: sealed secrets, JSON, decimals, addresses, timestamps
stay byte for byte what was stored), in primary-key order, and loaded back with ``COPY ...
FROM STDIN`` into whichever schema is the target. It works on any PostgreSQL the platform
runs on, through the ordinary connection.

The file (gzip when its name ends in ``.gz``)::

    {"format": "circuit-breaker-tenant-backup", "version": 1, "migrations": [...], ...}
    {"table": "agents_agent", "columns": ["id", ...]}
    <one COPY text line per row>
    \\.
    ... one section per table ...
    {"end": {"agents_agent": 3, ...}}

The end line counts the rows of each table: a truncated file is refused. The migrations
recorded are the schema's ``django_migrations`` rows; a restore refuses a file whose state is
not the target's, since the columns would not mean the same.

What is not in it: rows of the public schema (the tenant row, domains, API keys, plans): a
restore into the same tenant keeps them, a restore into a new tenant gets none (new API keys
are made with ``create_api_key``). Provider secrets and MCP auth headers stay sealed as stored:
a restore can open them only on a platform with the same ``FIELD_ENCRYPTION_KEYS``.

The dump reads one snapshot (REPEATABLE READ), so it is consistent while the tenant works.
The restore runs in one transaction: a failure (bad file, other migration state) leaves the
target as it was, and a new tenant is not created.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context
from psycopg import sql

from agents.core.hub import AGENT_CHANGES_CHANNEL
from agents.core.run_config import announce_run_config_change
from config.errors import Conflict, NotFound, ValidationFailed
from tenants.audit.services import platform_audit_record
from tenants.models import Domain, Plan, Tenant

FORMAT = "circuit-breaker-tenant-backup"
FORMAT_VERSION = 1
END_OF_DATA = b"\\.\n"
# Filled in every new schema (by its migrations' post_migrate, or copied from the template
# schema with the rows they wrote there): replaced by the file's rows, whose ids the other
# tables refer to.
SEEDED_TABLES = ("django_content_type", "auth_permission")
# Recorded in the header instead of copied: it is compared, never restored.
MIGRATIONS_TABLE = "django_migrations"


@dataclass
class BackupSummary:
    path: Path
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


@dataclass
class RestoreSummary:
    tenant: Tenant
    created: bool
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


# ---- the schema, read by introspection ----


def schema_tables(schema: str) -> list[str]:
    """Every table of ``schema`` (the migrations table too), by name."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY table_name",
            [schema],
        )
        return [row[0] for row in cursor.fetchall()]


def _columns(schema: str, table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s AND is_generated = 'NEVER' "
            "ORDER BY ordinal_position",
            [schema, table],
        )
        return [row[0] for row in cursor.fetchall()]


def _primary_key(schema: str, table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = %s::regclass AND i.indisprimary "
            "ORDER BY array_position(i.indkey::int2[], a.attnum)",
            [sql.Identifier(schema, table).as_string(None)],
        )
        return [row[0] for row in cursor.fetchall()]


def schema_migrations(schema: str) -> list[list[str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT app, name FROM {} ORDER BY app, name").format(
                sql.Identifier(schema, MIGRATIONS_TABLE)
            )
        )
        return [[app, name] for app, name in cursor.fetchall()]


def schema_is_empty(schema: str) -> bool:
    """No row in any table but what migrations write themselves."""
    skip = {MIGRATIONS_TABLE, *SEEDED_TABLES}
    with connection.cursor() as cursor:
        for table in schema_tables(schema):
            if table in skip:
                continue
            cursor.execute(
                sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(schema, table))
            )
            row = cursor.fetchone()
            if row is not None and row[0]:
                return False
    return True


def schema_exists(schema: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [schema])
        return cursor.fetchone() is not None


# ---- files ----


@contextmanager
def _open(path: Path, mode: str, *, compressed: bool | None = None) -> Iterator[IO[bytes]]:
    if compressed is None:
        with path.open("rb") as probe:
            compressed = probe.read(2) == b"\x1f\x8b"
    opener: Any = gzip.open if compressed else open
    with opener(path, mode) as handle:
        yield handle


def private_file(path: Path) -> Path:
    """``path`` created empty, readable by its owner only (the file will hold a tenant's
    data): made so before anything is written, never tightened after."""
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    return path


def _json_line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def _tenant_description(tenant: Tenant) -> dict[str, Any]:
    with schema_context("public"):
        domains = list(tenant.domains.order_by("domain").values_list("domain", flat=True))
        plan = tenant.plan.slug if tenant.plan is not None else None
    return {
        "slug": tenant.slug,
        "name": tenant.name,
        "schema_name": tenant.schema_name,
        "status": tenant.status,
        "plan": plan,
        "log_content": tenant.log_content,
        "domains": domains,
    }


# ---- backup ----


def tenant_backup(*, tenant: Tenant, output: Path, actor: str = "system") -> BackupSummary:
    """Write ``tenant``'s schema to ``output`` (one consistent snapshot; see the module), and
    record it in the platform log (a copy of a tenant's data left the database)."""
    schema = tenant.schema_name
    if not schema_exists(schema):
        raise NotFound(f"tenant {tenant.slug!r} has no schema {schema!r}")
    summary = BackupSummary(path=output)
    description = _tenant_description(tenant)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = private_file(output.with_name(output.name + ".partial"))
    outermost = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if outermost:
            # The first statement of our transaction (SET search_path takes no snapshot):
            # every table below is read as of this one moment. Inside a caller's transaction
            # the caller's isolation applies.
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        tables = [t for t in schema_tables(schema) if t != MIGRATIONS_TABLE]
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created_at": timezone.now().isoformat(),
            "tenant": description,
            "migrations": schema_migrations(schema),
            "tables": tables,
        }
        raw = cursor.cursor  # psycopg's own cursor: COPY is not part of the DB-API
        with _open(partial, "wb", compressed=output.suffix == ".gz") as out:
            out.write(_json_line(header))
            for table in tables:
                columns = _columns(schema, table)
                order = _primary_key(schema, table) or columns
                out.write(_json_line({"table": table, "columns": columns}))
                statement = sql.SQL("COPY (SELECT {cols} FROM {table} ORDER BY {order}) TO STDOUT")
                count = 0
                with raw.copy(
                    statement.format(
                        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
                        table=sql.Identifier(schema, table),
                        order=sql.SQL(", ").join(map(sql.Identifier, order)),
                    )
                ) as copy:
                    # One chunk per row: the server sends each row as its own message.
                    for chunk in copy:
                        out.write(bytes(chunk))
                        count += 1
                out.write(END_OF_DATA)
                summary.rows[table] = count
            out.write(_json_line({"end": summary.rows}))
    partial.replace(output)  # never a half-written file under the name asked for
    platform_audit_record(
        actor=actor,
        action="tenant.backup",
        target_type="tenant",
        target_id=tenant.slug,
        details={"file": output.name, "rows": summary.total},
    )
    return summary


# ---- restore ----


class BackupFileError(ValidationFailed):
    """The file is not a complete backup this platform can restore."""


def read_header(path: Path) -> dict[str, Any]:
    with _open(path, "rb") as handle:
        return _parse_header(handle.readline())


def _parse_header(line: bytes) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupFileError("not a tenant backup file")
    if header.get("version") != FORMAT_VERSION:
        raise BackupFileError(
            f"backup format version {header.get('version')!r}; this platform reads "
            f"version {FORMAT_VERSION}"
        )
    return header


def _check_migrations(header: dict[str, Any], schema: str) -> None:
    have = {tuple(m) for m in schema_migrations(schema)}
    want = {tuple(m) for m in header.get("migrations", [])}
    if have != want:
        missing = sorted(want - have)[:5]
        extra = sorted(have - want)[:5]
        raise BackupFileError(
            "the backup was made at another migration state than this platform's "
            f"(only in the file: {missing or 'nothing'}; only here: {extra or 'nothing'}); "
            "restore it with the platform version that made it, then migrate"
        )


def _load(handle: IO[bytes], schema: str, summary: RestoreSummary) -> None:
    target_tables = set(schema_tables(schema))
    with connection.cursor() as cursor:
        # Rows arrive table by table, not in foreign-key order: check references at COMMIT.
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        for table in SEEDED_TABLES:
            if table in target_tables:
                cursor.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table)))
        _copy_sections(handle, schema, target_tables, cursor.cursor, summary)


def _copy_sections(
    handle: IO[bytes], schema: str, target_tables: set[str], raw: Any, summary: RestoreSummary
) -> None:
    expected: dict[str, int] | None = None
    for line in handle:
        try:
            section = json.loads(line)
            if "end" in section:
                expected = dict(section["end"])
                break
            table, columns = str(section["table"]), list(section["columns"])
        except (ValueError, KeyError, TypeError):
            raise BackupFileError(
                "the backup is damaged (a section header does not read)"
            ) from None
        if table not in target_tables:
            raise BackupFileError(f"table {table!r} of the backup does not exist here")
        unknown = set(columns) - set(_columns(schema, table))
        if unknown:
            raise BackupFileError(f"table {table!r}: columns {sorted(unknown)} do not exist here")
        count = 0
        statement = sql.SQL("COPY {table} ({cols}) FROM STDIN").format(
            table=sql.Identifier(schema, table),
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        )
        try:
            with raw.copy(statement) as copy:
                for row in handle:
                    if row == END_OF_DATA:
                        break
                    copy.write(row)
                    count += 1
                else:
                    raise BackupFileError(f"the backup ends inside table {table!r}")
        except psycopg.Error as exc:
            # A row the database does not take (a damaged file): the transaction is lost anyway.
            raise BackupFileError(f"table {table!r}: {exc.diag.message_primary or exc}") from None
        summary.rows[table] = count
    if expected is None:
        raise BackupFileError("the backup is incomplete (no end line)")
    if expected != summary.rows:
        raise BackupFileError("the backup's row counts do not match its end line")


def reset_sequences(schema: str) -> None:
    """Every sequence owned by a column of ``schema`` continues after the highest id."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.table_name, c.column_name, "
            "pg_get_serial_sequence(quote_ident(c.table_schema) || '.' || "
            "quote_ident(c.table_name), c.column_name) "
            "FROM information_schema.columns c WHERE c.table_schema = %s",
            [schema],
        )
        owned = [(t, c, s) for t, c, s in cursor.fetchall() if s]
        for table, column, sequence in owned:
            cursor.execute(
                sql.SQL(
                    "SELECT setval({seq}, coalesce(max({col}), 1), max({col}) IS NOT NULL) "
                    "FROM {table}"
                ).format(
                    seq=sql.Literal(sequence),
                    col=sql.Identifier(column),
                    table=sql.Identifier(schema, table),
                )
            )


def _recreate_schema(tenant: Tenant) -> None:
    # The audit log refuses DELETE and TRUNCATE, so a tenant's data can only be replaced by
    # dropping its schema; the migrations then build it afresh (inside our transaction).
    with connection.cursor() as cursor:
        # Inside a caller's transaction, foreign-key checks still pending on these tables
        # would make PostgreSQL refuse the DROP: run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(tenant.schema_name))
        )
    tenant.create_schema(check_if_exists=False, verbosity=0)


def _new_tenant(header: dict[str, Any], *, slug: str, name: str, domain: str | None) -> Tenant:
    """A tenant made for the backup: its schema and (if given) domain, the plan of the tenant
    the backup came from when a plan of that slug exists here; no API key, no operator (the
    backup brings the operators)."""
    if not name.strip():
        raise ValidationFailed("name: must not be empty")
    if Tenant.objects.filter(slug=slug).exists():
        raise Conflict(f"slug: a tenant {slug!r} already exists")
    if domain and Domain.objects.filter(domain=domain.lower()).exists():
        raise Conflict(f"domain: {domain!r} already belongs to a tenant")
    described = header.get("tenant") or {}
    plan = Plan.objects.filter(slug=described.get("plan") or "").first()
    tenant = Tenant(
        slug=slug,
        name=name.strip(),
        schema_name=Tenant.schema_for_slug(slug),
        plan=plan,
        log_content=bool(described.get("log_content", False)),
    )
    try:
        tenant.full_clean(exclude=["schema_name"])
    except DjangoValidationError as exc:
        raise ValidationFailed(
            "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        ) from None
    if schema_exists(tenant.schema_name):
        raise Conflict(f"schema {tenant.schema_name!r} already exists (a tenant deleted by hand?)")
    tenant.save(verbosity=0)  # creates and migrates the schema
    if domain:
        Domain.objects.create(domain=domain.lower(), tenant=tenant, is_primary=True)
    return tenant


def tenant_restore(
    *,
    source: Path,
    tenant: Tenant | None = None,
    replace: bool = False,
    new_slug: str | None = None,
    new_name: str = "",
    new_domain: str | None = None,
    actor: str = "system",
) -> RestoreSummary:
    """Load a backup into ``tenant`` (refused unless its schema is empty or ``replace``) or
    into a new tenant ``new_slug`` created here. All or nothing: one transaction."""
    if (tenant is None) == (new_slug is None):
        raise ValueError("restore into an existing tenant or a new one, not both")
    with _open(source, "rb") as handle:
        header = _parse_header(handle.readline())
        with schema_context("public"), transaction.atomic():
            with connection.cursor() as cursor:
                # Replacing a schema waits for whoever uses it; waiting forever is not fine.
                cursor.execute("SET LOCAL lock_timeout = '30s'")
            if tenant is not None:
                tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
                if not replace and not schema_is_empty(tenant.schema_name):
                    raise Conflict(
                        f"tenant {tenant.slug!r} has data; give --replace to replace all of it"
                    )
                _recreate_schema(tenant)
                summary = RestoreSummary(tenant=tenant, created=False)
            else:
                assert new_slug is not None
                tenant = _new_tenant(header, slug=new_slug, name=new_name, domain=new_domain)
                summary = RestoreSummary(tenant=tenant, created=True)
            _check_migrations(header, tenant.schema_name)
            # Names are schema-qualified, but the tables' statement triggers announce changes
            # (agents, events) under current_schema(): it must be the tenant's, so that every
            # process drops what it cached of the tenant before the restore.
            with schema_context(tenant.schema_name):
                _load(handle, tenant.schema_name, summary)
                reset_sequences(tenant.schema_name)
            with connection.cursor() as cursor:
                # Also when the backup has no agent (the trigger is silent then) but the
                # replaced schema had some: delivered at COMMIT.
                cursor.execute(
                    "SELECT pg_notify(%s, %s)",
                    [AGENT_CHANGES_CHANNEL, f"{tenant.schema_name}:agents:0"],
                )
            # Likewise for what runs cached (agents, credentials, prices): the replaced schema
            # was dropped without a trigger firing.
            announce_run_config_change(tenant.schema_name)
            described = header.get("tenant") or {}
            # Last in the transaction: the platform log's chain lock is held until COMMIT.
            platform_audit_record(
                actor=actor,
                action="tenant.restore",
                target_type="tenant",
                target_id=tenant.slug,
                details={
                    "created": summary.created,
                    "rows": summary.total,
                    "from_tenant": str(described.get("slug", "")),
                    "backup_created_at": str(header.get("created_at", "")),
                },
            )
    return summary
