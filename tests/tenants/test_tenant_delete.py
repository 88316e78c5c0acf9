"""Deleting a tenant completely: its schema is gone and no public table holds its id, slug or
schema name any more (the platform's append-only audit log aside, which records the
deletion); the other tenant keeps everything."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from psycopg import sql

from agents.core import queue
from tenants.backup import schema_exists
from tenants.models import ApiKey, PlatformAuditLog, RateBucket, StreamLease, Tenant
from tenants.services import tenant_create
from tests.conftest import ApiClient
from tests.tenants.test_backup import populate, snapshot

SLUG = "erase-me"
PLATFORM_LOG = PlatformAuditLog._meta.db_table
TEXT_TYPES = ("text", "character varying", "character", "uuid", "json", "jsonb", "inet")


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def mentions(tenant_id: int, slug: str, schema: str) -> dict[str, int]:
    """Rows of every public table (but the platform log) with a text, uuid or JSON column
    holding the slug or schema name anywhere, or the id as a whole value or JSON number;
    integer columns about tenants holding the id."""
    found: dict[str, int] = {}
    like = [f"%{slug}%", "%" + schema.replace("_", r"\_") + "%"]
    id_in_json = rf'"[a-z_]*tenant[a-z_]*": ?"?{tenant_id}\M'
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name IN (SELECT table_name FROM "
            "information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE')"
        )
        columns = cursor.fetchall()
        for table, column, data_type in columns:
            if table == PLATFORM_LOG:
                continue
            col = sql.Identifier(column)
            if data_type in TEXT_TYPES:
                # The id as a whole value, as a JSON "tenant…" number, or as a ":"-separated
                # part of a text key ("req:t:<id>").
                token = (
                    rf"(^|:){tenant_id}(:|$)"
                    if data_type in ("text", "character varying")
                    else "$^"
                )
                where = sql.SQL(
                    "{col}::text ILIKE ANY(%s) OR {col}::text = %s OR {col}::text ~ %s "
                    "OR {col}::text ~ %s"
                ).format(col=col)
                params: list[Any] = [like, str(tenant_id), id_in_json, token]
            elif data_type in ("bigint", "integer") and "tenant" in column:
                where, params = sql.SQL("{col} = %s").format(col=col), [tenant_id]
            else:
                continue
            cursor.execute(
                sql.SQL("SELECT count(*) FROM {t} WHERE {w}").format(
                    t=sql.Identifier("public", table), w=where
                ),
                params,
            )
            (count,) = cursor.fetchone()
            if count:
                found[f"{table}.{column}"] = count
    return found


@pytest.fixture
def doomed(db: None, settings: Any, bravo: Any) -> Tenant:
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    created = tenant_create(slug=SLUG, name="Erase Me", domain="erase-me.localhost")
    tenant = created.tenant
    tenant.first_key = created.api_key  # type: ignore[attr-defined]
    populate(tenant)
    # Public rows that point at it without a foreign key, and some of the other tenant.
    soon = timezone.now() + dt.timedelta(minutes=5)
    for who in (tenant, bravo.tenant):
        StreamLease.objects.create(tenant_id=who.pk, holder="k", expires_at=soon)
        RateBucket.objects.create(key=f"req:t:{who.pk}", tokens=1, updated_at=timezone.now())
        RateBucket.objects.create(key=f"exec:k:{who.pk}:k1", tokens=1, updated_at=timezone.now())
        queue.enqueue(schema_name=who.schema_name, execution_id="exec_nothing")
    # A bucket of a tenant whose id starts with this one's digits stays.
    RateBucket.objects.create(key=f"req:t:{tenant.pk}0", tokens=1, updated_at=timezone.now())
    operator = User.objects.create_user(username="platform-op", password="x")
    LogEntry.objects.create(
        user=operator,
        content_type=ContentType.objects.get_for_model(Tenant),
        object_id=str(tenant.pk),
        object_repr=str(tenant),
        action_flag=CHANGE,
        change_message="changed the plan",
    )
    return tenant


def test_a_deleted_tenant_leaves_no_row_and_no_schema(doomed, bravo):
    tenant_id, schema = doomed.pk, doomed.schema_name
    before = mentions(tenant_id, SLUG, schema)
    for where in (
        "tenants_tenant.slug",
        "tenants_domain.domain",
        "procrastinate_jobs.args",
        "tenants_streamlease.tenant_id",
        "tenants_ratebucket.key",
        "django_admin_log.object_repr",
    ):
        assert where in before, f"{where}: the test's tenant has no such row to delete"
    assert ApiKey.objects.filter(tenant_id=tenant_id).exists()
    bravo_rows = snapshot(bravo.schema)
    bravo_keys = ApiKey.objects.filter(tenant=bravo.tenant).count()

    # Its key works (and is now in this process's key cache) ...
    key_client = ApiClient(doomed.first_key, host="erase-me.localhost")
    assert key_client.get("/auth/whoami").status_code == 200

    out = run("tenant_delete", SLUG, "--confirm", SLUG)

    # ... and not any more, by its domain or any other.
    assert key_client.get("/auth/whoami").status_code in (401, 404)
    assert ApiClient(doomed.first_key).get("/auth/whoami").status_code == 401

    assert f"{SLUG}: deleted (schema {schema} dropped" in out
    assert not schema_exists(schema)
    assert mentions(tenant_id, SLUG, schema) == {}
    # The platform's own record: append-only, so its earlier entries stay; the last one says
    # who deleted the tenant.
    entries = list(
        PlatformAuditLog.objects.filter(target_type="tenant", target_id=SLUG).order_by("id")
    )
    assert [e.action for e in entries] == ["tenant.create", "tenant.delete"]
    assert entries[-1].actor == "command:tenant_delete"
    # The other tenant keeps its schema, keys, leases, buckets and jobs.
    assert snapshot(bravo.schema) == bravo_rows
    assert ApiKey.objects.filter(tenant=bravo.tenant).count() == bravo_keys
    assert StreamLease.objects.filter(tenant_id=bravo.tenant.pk).count() == 1
    assert RateBucket.objects.filter(key__contains=f":{bravo.tenant.pk}").count() == 2
    assert RateBucket.objects.filter(key=f"req:t:{tenant_id}0").exists()
    assert queue.execution_job_ids(bravo.schema, "exec_nothing")


def test_delete_needs_the_slug_repeated_and_refuses_while_runs_are_on(doomed):
    with pytest.raises(CommandError, match="repeat the tenant's slug"):
        run("tenant_delete", SLUG, "--confirm", "erase-m")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE procrastinate_jobs SET status = 'doing' WHERE args->>'schema_name' = %s",
            [doomed.schema_name],
        )
    with pytest.raises(CommandError, match="job\\(s\\) of the tenant are running"):
        run("tenant_delete", SLUG, "--confirm", SLUG)
    assert schema_exists(doomed.schema_name) and Tenant.objects.filter(slug=SLUG).exists()
    with pytest.raises(CommandError, match="no tenant 'nobody'"):
        run("tenant_delete", "nobody", "--confirm", "nobody")
