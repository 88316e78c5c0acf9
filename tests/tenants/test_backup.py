"""Backup and restore of one tenant: a tenant with data of every kind goes to a file, is
dropped, and comes back in a new tenant with every row of every table equal; restores that
would lose or mix data are refused and leave everything as it was."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import CommandError, call_command, get_commands
from django.db import connection
from django_tenants.utils import schema_context
from psycopg import sql

from agents.crypto import encrypt_secret
from agents.models import (
    Agent,
    ExecutionEvent,
    IdempotencyRecord,
    McpServer,
    ProviderCredential,
    UsageCounter,
)
from agents.services.credentials import provider_config_for
from tenants.audit.models import AuditLog
from tenants.audit.services import audit_record
from tenants.backup import schema_exists, schema_tables
from tenants.models import PlatformAuditLog, Tenant
from tenants.services import tenant_create
from tests.agents.conftest import make_agent, make_credential
from tests.retention.conftest import Runs
from tests.workflow_bridge.test_cascade import review_flow
from workflow_bridge.services import activity_fire, resource_create, workflow_save

PROVIDER_KEY = "sk-backup-test-0123456789"


def run(name: str, *args: str) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue()


def populate(tenant: Tenant) -> None:
    """Data of every kind a tenant has."""
    schema = tenant.schema_name
    with schema_context(schema):
        credential = make_credential(
            kind="openai", base_url="http://127.0.0.1:9/v1", api_key=PROVIDER_KEY
        )
        agent = make_agent(credential, schema, slug="writer", system_prompt="Be brief. ✓")
        McpServer.objects.create(
            name="tools",
            url="https://mcp.example.test/mcp",
            auth_header_encrypted=encrypt_secret("Authorization: Bearer mcp-secret"),
            allowed_tools=["search"],
        )
        workflow = workflow_save(
            definition=review_flow("review"), actor="tests", schema_name=schema
        )
        resource = resource_create(
            workflow=workflow, data={"a": 1}, metadata={"m": "x"}, actor="ann", schema_name=schema
        )
        activity_fire(
            resource=resource, activity_id="submit", data={"b": 2}, actor="ann", schema_name=schema
        )
        runs = Runs(schema, agent)
        parent = runs.make(days_old=3, events=3, idempotency_key="k-1")
        runs.make(days_old=1, status="running", events=1, parent=runs.parent_of(parent))
        UsageCounter.objects.create(
            period="day", starts_on=dt.date(2026, 1, 2), executions=2, cost="0.01234567"
        )
        UsageCounter.objects.create(period="month", starts_on=dt.date(2026, 1, 1), executions=2)
        group = Group.objects.create(name="operators")
        group.permissions.add(Permission.objects.get(codename="run_agent"))
        user = User.objects.create_user(username="ops", password="pw-ops-1")
        user.groups.add(group)
        user.user_permissions.add(Permission.objects.get(codename="view_agent"))
    for n in range(3):
        audit_record(
            schema_name=schema, actor="tests", action=f"test.{n}", details={"n": n, "t": "é"}
        )


def snapshot(schema: str) -> dict[str, list[str]]:
    """Every row of every table (all columns, as PostgreSQL prints them), in key order."""
    rows: dict[str, list[str]] = {}
    with connection.cursor() as cursor:
        for table in schema_tables(schema):
            if table == "django_migrations":
                continue
            cursor.execute(
                sql.SQL("SELECT t::text FROM {} AS t ORDER BY 1").format(
                    sql.Identifier(schema, table)
                )
            )
            rows[table] = [r[0] for r in cursor.fetchall()]
    return rows


def drop_tenant(tenant: Tenant) -> None:
    check_constraints_now()
    with schema_context("public"):
        Tenant.objects.filter(pk=tenant.pk).delete()
        with connection.cursor() as cursor:
            cursor.execute(
                sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(tenant.schema_name))
            )


def check_constraints_now() -> None:
    # The test's transaction never commits: check the deferred foreign keys here.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.fixture
def source(db: None, settings: Any) -> Tenant:
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    tenant = tenant_create(slug="keep-src", name="Keep Source", domain="keep-src.localhost").tenant
    populate(tenant)
    return tenant


def test_backup_drop_restore_into_a_new_tenant_loses_nothing(source, bravo, tmp_path):
    before = snapshot(source.schema_name)
    bravo_before = snapshot(bravo.schema)
    for table in (
        "agents_agent",
        "agents_agentversion",
        "agents_providercredential",
        "agents_mcpserver",
        "workflow_bridge_workflow",
        "workflow_bridge_resource",
        "workflow_bridge_resourceevent",
        "agents_execution",
        "agents_executionevent",
        "agents_usagecounter",
        "agents_idempotencyrecord",
        "audit_auditlog",
        "auth_user_groups",
        "auth_group_permissions",
        "auth_user_user_permissions",
    ):
        assert before[table], f"the source tenant has no {table} rows: the test proves nothing"
    file = tmp_path / "keep.cbbackup.gz"

    out = run("tenant_backup", "keep-src", "--output", str(file))
    assert f"written to {file}" in out
    assert file.stat().st_mode & 0o777 == 0o600  # a tenant's data: its owner's eyes only
    with gzip.open(file, "rt") as handle:
        text = handle.read()
    assert PROVIDER_KEY not in text and "mcp-secret" not in text  # sealed as stored
    drop_tenant(source)
    assert not schema_exists(source.schema_name)

    out = run(
        "tenant_restore",
        str(file),
        "--new-tenant",
        "keep-dst",
        "--name",
        "Keep",
        "--domain",
        "keep-dst.localhost",
    )
    check_constraints_now()

    assert "keep-dst: created and restored" in out
    restored = Tenant.objects.get(slug="keep-dst")
    assert restored.domains.get().domain == "keep-dst.localhost"
    assert snapshot(restored.schema_name) == before
    assert snapshot(bravo.schema) == bravo_before  # the other tenant saw nothing of it
    # The platform's log says who copied the tenant out, and who brought it back from where.
    backup_entry = PlatformAuditLog.objects.get(action="tenant.backup", target_id="keep-src")
    assert backup_entry.actor == "command:tenant_backup"
    assert backup_entry.details["file"] == file.name
    restore_entry = PlatformAuditLog.objects.get(action="tenant.restore", target_id="keep-dst")
    assert restore_entry.details["from_tenant"] == "keep-src"
    assert restore_entry.details["created"] is True
    with schema_context(restored.schema_name):
        # Sealed secrets open again (same platform keys) and the ids go on after the restored ones.
        credential = ProviderCredential.objects.get()
        assert provider_config_for(credential).api_key == PROVIDER_KEY
        agent = Agent.objects.get(slug="writer")
        execution_id = ExecutionEvent.objects.order_by("-id").first().execution_id
        newest = ExecutionEvent.objects.create(execution_id=execution_id, seq=99, type="x")
        assert newest.id > max(e.id for e in ExecutionEvent.objects.exclude(pk=newest.pk))
        assert agent.versions.count() == 1
    entry = audit_record(schema_name=restored.schema_name, actor="tests", action="after.restore")
    with schema_context(restored.schema_name):
        assert entry.id == AuditLog.objects.order_by("-id").values_list("id", flat=True)[0]
    if "audit_verify" not in get_commands():
        pytest.skip("the audit hash chain (audit_verify) has not landed")
    assert "ok      tenant keep-dst" in run("audit_verify", "--tenant", "keep-dst")


def test_restore_into_the_same_tenant_needs_an_empty_schema_or_replace(source, tmp_path):
    file = tmp_path / "keep.cbbackup"
    run("tenant_backup", "keep-src", "--output", str(file))
    before = snapshot(source.schema_name)
    with schema_context(source.schema_name):
        Agent.objects.filter(slug="writer").update(name="changed after the backup")
        IdempotencyRecord.objects.all().delete()

    with pytest.raises(CommandError, match="has data; give --replace"):
        run("tenant_restore", str(file), "--tenant", "keep-src")
    with schema_context(source.schema_name):
        assert Agent.objects.get(slug="writer").name == "changed after the backup"

    out = run("tenant_restore", str(file), "--tenant", "keep-src", "--replace")
    check_constraints_now()
    assert "keep-src: restored" in out
    assert snapshot(source.schema_name) == before
    # The tenant's public rows (its API key, its domain) are untouched.
    assert source.api_keys.count() == 1 and source.domains.count() == 1


def _rewrite(file: Path, target: Path, change: Any) -> None:
    lines = file.read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])
    change(header, lines)
    lines[0] = json.dumps(header).encode() + b"\n"
    target.write_bytes(b"".join(lines))


def test_a_file_from_another_migration_state_or_a_cut_file_is_refused(source, tmp_path):
    file = tmp_path / "keep.cbbackup"
    run("tenant_backup", "keep-src", "--output", str(file))
    older = tmp_path / "older.cbbackup"
    _rewrite(file, older, lambda header, lines: header["migrations"].pop())
    cut = tmp_path / "cut.cbbackup"
    _rewrite(file, cut, lambda header, lines: lines.__delitem__(slice(len(lines) // 2, None)))
    damaged = tmp_path / "damaged.cbbackup"
    _rewrite(
        file,
        damaged,
        lambda header, lines: lines.__setitem__(
            next(i for i, line in enumerate(lines) if b"writer" in line), b"not\ta row\n"
        ),
    )
    newer = tmp_path / "newer.cbbackup"
    _rewrite(file, newer, lambda header, lines: header.__setitem__("version", 99))
    (tmp_path / "junk").write_text("hello")

    for bad, message in (
        (older, "another migration state"),
        (cut, "ends inside table|incomplete"),
        (damaged, "table 'agents_agent'"),
        (newer, "format version 99"),
        (tmp_path / "junk", "not a tenant backup file"),
    ):
        with pytest.raises(CommandError, match=message):
            run("tenant_restore", str(bad), "--new-tenant", "keep-new", "--name", "New")
        # All or nothing: no tenant row, no schema.
        assert not Tenant.objects.filter(slug="keep-new").exists()
        assert not schema_exists(Tenant.schema_for_slug("keep-new"))


def test_bad_arguments_are_refused_with_the_reason(source, tmp_path):
    file = tmp_path / "keep.cbbackup"
    with pytest.raises(CommandError, match="no tenant 'nobody'"):
        run("tenant_backup", "nobody", "--output", str(file))
    run("tenant_backup", "keep-src", "--output", str(file))
    with pytest.raises(CommandError, match="needs --name"):
        run("tenant_restore", str(file), "--new-tenant", "x-new")
    with pytest.raises(CommandError, match="already exists"):
        run("tenant_restore", str(file), "--new-tenant", "keep-src", "--name", "X")
    with pytest.raises(CommandError, match="no file"):
        run("tenant_restore", str(tmp_path / "missing"), "--tenant", "keep-src")


def test_committed_backup_and_restore_copy_a_live_tenant(committed_personas, tmp_path):
    """Outside a test transaction: the backup's own REPEATABLE READ snapshot, and the
    restore's foreign keys checked at a real COMMIT."""
    alpha = committed_personas["alpha"]
    with schema_context(alpha.schema):
        agent = make_agent(make_credential(), alpha.schema)
    Runs(alpha.schema, agent).make(days_old=2, events=4, idempotency_key="committed")
    file = tmp_path / "alpha.cbbackup"
    db = connection.settings_dict
    params = {"dbname": db["NAME"], "user": db["USER"] or None, "password": db["PASSWORD"] or None}
    params.update({k: v for k, v in (("host", db["HOST"]), ("port", db["PORT"])) if v})
    try:
        run("tenant_backup", "alpha", "--output", str(file))
        with psycopg.connect(**params, autocommit=True) as listener:
            listener.execute("LISTEN agent_changes")
            run("tenant_restore", str(file), "--new-tenant", "alpha-copy", "--name", "Copy")
            heard = {n.payload for n in listener.notifies(timeout=5, stop_after=1)}
        copy = Tenant.objects.get(slug="alpha-copy")
        assert snapshot(copy.schema_name) == snapshot(alpha.schema)
        # Processes that cached the tenant's agents hear of the restored ones.
        assert heard == {f"{copy.schema_name}:agents:0"}
        assert "ok      tenant alpha-copy" in run("audit_verify", "--tenant", "alpha-copy")
    finally:
        with schema_context(alpha.schema):
            IdempotencyRecord.objects.all().delete()
        copy_row = Tenant.objects.filter(slug="alpha-copy").first()
        if copy_row is not None:
            drop_tenant(copy_row)
