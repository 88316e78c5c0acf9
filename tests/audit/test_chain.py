"""The tenant audit log's hash chain: written by the database, checked by audit_verify,
tampering found even when the append-only triggers were bypassed by a superuser."""

from __future__ import annotations

import itertools
import json
import threading

import pytest
from django.db import DatabaseError, connection, connections, transaction
from django_tenants.utils import schema_context

from tenants.audit.models import AuditLog
from tenants.audit.services import audit_record
from tests.audit.conftest import run_command


def write(schema: str, n: int, *, action: str = "test.chain", **details: object) -> list[int]:
    return [
        audit_record(
            schema_name=schema,
            actor="user:tester",
            action=action,
            target_type="thing",
            target_id=str(i),
            client="203.0.113.7",
            details={"n": i, **details},
        ).pk
        for i in range(n)
    ]


def test_each_entry_holds_the_hash_of_the_one_before(alpha):
    ids = write(alpha.schema, 3)
    with schema_context(alpha.schema):
        entries = list(AuditLog.objects.filter(pk__in=ids).order_by("id"))
        before = AuditLog.objects.filter(id__lt=ids[0]).order_by("-id").first()
    assert entries[0].prev_hash == (before.entry_hash if before else "")
    for previous, entry in itertools.pairwise(entries):
        assert entry.prev_hash == previous.entry_hash
    assert len({e.entry_hash for e in entries}) == 3
    assert all(len(e.entry_hash) == 64 for e in entries)
    result = run_command("audit_verify", "--tenant", alpha.slug)
    assert result.status == 0 and f"ok      tenant {alpha.slug}" in result.out


def test_the_written_entry_knows_its_hash_without_another_query(alpha):
    entry = audit_record(schema_name=alpha.schema, actor="user:t", action="test.returning")
    with schema_context(alpha.schema):
        stored = AuditLog.objects.get(pk=entry.pk)
    assert entry.entry_hash == stored.entry_hash and entry.prev_hash == stored.prev_hash


def test_an_insert_cannot_choose_its_hashes(alpha):
    with schema_context(alpha.schema):
        forged = AuditLog(actor="user:x", action="test.forged")
        forged.prev_hash = "0" * 64
        forged.entry_hash = "f" * 64
        forged.save(force_insert=True)
        stored = AuditLog.objects.get(pk=forged.pk)
    assert stored.entry_hash != "f" * 64 and stored.prev_hash != "0" * 64
    assert run_command("audit_verify", "--tenant", alpha.slug).status == 0


def test_an_update_by_a_superuser_in_replica_mode_is_detected(alpha, bravo):
    ids = write(alpha.schema, 3)
    write(bravo.schema, 1)
    with connection.cursor() as cursor:
        # What a superuser can do: switch ordinary triggers off for the session.
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            f'UPDATE "{alpha.schema}".audit_auditlog SET actor = %s WHERE id = %s',
            ["user:somebody-else", ids[1]],
        )
        cursor.execute("SET LOCAL session_replication_role = origin")
    result = run_command("audit_verify")
    assert result.status == 1
    assert f"BROKEN  tenant {alpha.slug}: entry {ids[1]}: its content does not match" in result.out
    assert f"ok      tenant {bravo.slug}" in result.out  # the other tenant's chain is intact


def test_a_delete_with_the_trigger_disabled_is_detected(alpha):
    ids = write(alpha.schema, 3)
    with connection.cursor() as cursor:
        table = f'"{alpha.schema}".audit_auditlog'
        cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER audit_auditlog_append_only")
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [ids[1]])
        cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER audit_auditlog_append_only")
    result = run_command("audit_verify", "--tenant", alpha.slug)
    assert result.status == 1
    assert f"entry {ids[2]}: it does not hold the previous entry's hash" in result.out


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE {table}",
        "UPDATE {table} SET actor = 'x'",
        "DELETE FROM {table}",
    ],
)
def test_truncate_update_and_delete_are_refused(alpha, statement):
    write(alpha.schema, 1)
    table = f'"{alpha.schema}".audit_auditlog'
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement.format(table=table))
    with schema_context(alpha.schema):
        assert AuditLog.objects.exists()


def test_an_unknown_tenant_is_named(db):
    result = run_command("audit_verify", "--tenant", "no-such-tenant")
    assert result.status == 1 and "'no-such-tenant'" in result.out


def test_concurrent_writers_on_several_connections_keep_one_valid_chain(committed_personas):
    alpha = committed_personas["alpha"]
    with schema_context(alpha.schema):
        before = AuditLog.objects.count()
    threads, per_thread = 6, 15
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            start.wait(timeout=30)
            write(alpha.schema, per_thread, action="test.concurrent", writer=number)
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not errors, errors
    with schema_context(alpha.schema):
        assert AuditLog.objects.count() == before + threads * per_thread
    result = run_command("audit_verify", "--tenant", alpha.slug)
    assert result.status == 0, result.out


def test_export_round_trip(alpha, tmp_path):
    ids = write(alpha.schema, 2, text="naïve ünïcode ✓", nested={"b": [1, 2.5, None], "a": True})
    output = tmp_path / "audit.jsonl"
    result = run_command("audit_export", "--tenant", alpha.slug, "--output", str(output))
    assert result.status == 0
    lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    with schema_context(alpha.schema):
        stored = list(AuditLog.objects.order_by("id"))
    assert [line["id"] for line in lines] == [e.pk for e in stored]
    exported = {line["id"]: line for line in lines}
    assert exported[ids[1]]["details"]["text"] == "naïve ünïcode ✓"
    assert exported[ids[1]]["ip_address"] == "203.0.113.7"
    for previous, line in itertools.pairwise(lines):
        assert line["prev_hash"] == previous["entry_hash"]
    # The export alone suffices to check the hashes: the database's own function, given each
    # line back as a row, gives the hash the line carries.
    with connection.cursor() as cursor:
        for line in lines:
            cursor.execute(
                f'SELECT "{alpha.schema}".audit_entry_hash(%s, '
                f'jsonb_populate_record(NULL::"{alpha.schema}".audit_auditlog, %s::jsonb))',
                [line["prev_hash"], json.dumps(line)],
            )
            assert cursor.fetchone()[0] == line["entry_hash"], line


def test_export_filters_by_time_and_names_a_bad_bound(alpha, tmp_path):
    write(alpha.schema, 1)
    with schema_context(alpha.schema):
        last = AuditLog.objects.order_by("-id").first()
    since = last.created_at.isoformat()
    output = tmp_path / "since.jsonl"
    assert (
        run_command(
            "audit_export", "--tenant", alpha.slug, "--since", since, "--output", str(output)
        ).status
        == 0
    )
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["id"] for line in lines] == [last.pk]
    empty = tmp_path / "until.jsonl"
    run_command(
        "audit_export", "--tenant", alpha.slug, "--until", "2000-01-01", "--output", str(empty)
    )
    assert empty.read_text() == ""
    bad = run_command("audit_export", "--tenant", alpha.slug, "--since", "yesterday")
    assert bad.status == 1 and "--since" in bad.out
    other = run_command("audit_export", "--tenant", "nobody-here")
    assert other.status == 1 and "--tenant" in other.out


def test_an_id_smaller_than_the_last_is_drawn_again_so_id_order_stays_chain_order(alpha):
    # What a writer that drew its id before another but got the lock after it would bring.
    write(alpha.schema, 2)
    with schema_context(alpha.schema):
        last = AuditLog.objects.order_by("-id").first()
        late = AuditLog(id=1, actor="user:late", action="test.late")
        late.save(force_insert=True)
        stored = AuditLog.objects.get(action="test.late", actor="user:late")
    assert stored.pk > last.pk and stored.prev_hash == last.entry_hash
    assert run_command("audit_verify", "--tenant", alpha.slug).status == 0
