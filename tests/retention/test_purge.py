"""The retention purge: ended executions past the plan's retention_days go with their events
and idempotency records; newer ones, unfinished ones, other tenants and usage counters stay."""

from __future__ import annotations

import datetime as dt
import io

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import Execution, UsageCounter
from agents.retention import purge_tenant, retention_targets
from tenants.models import Tenant, TenantStatus
from tests.retention.conftest import runs_for, wipe


def purge(*args: str) -> str:
    out = io.StringIO()
    call_command("purge_expired", *args, stdout=out)
    return out.getvalue()


def test_old_ended_runs_go_with_their_events_newer_and_unfinished_stay(alpha, bravo, plan_on):
    plan_on(alpha, retention_days=30)
    runs = runs_for(alpha)
    old_done = runs.make(days_old=40, idempotency_key="old-key")
    old_failed = runs.make(days_old=31, status="failed")
    old_cancelled = runs.make(days_old=400, status="cancelled")
    old_running = runs.make(days_old=40, status="running")
    old_queued = runs.make(days_old=40, status="queued")
    old_pending = runs.make(days_old=40, status="pending")
    fresh_done = runs.make(days_old=29, idempotency_key="fresh-key")
    # A newer child of an expired parent stays, unlinked (the model's SET_NULL).
    child = runs.make(days_old=1, parent=runs.parent_of(old_done))
    with schema_context(alpha.schema):
        UsageCounter.objects.create(period="day", starts_on=dt.date(2020, 1, 1), executions=3)

    out = purge()

    kept = {old_running, old_queued, old_pending, fresh_done, child}
    assert runs.ids() == kept
    assert runs.event_owners() == kept
    assert runs.idempotency_keys() == {"fresh-key"}
    assert runs.parent_of(child).parent_id is None
    with schema_context(alpha.schema):
        # Aggregates, not personal data: quotas and invoices still need them.
        assert UsageCounter.objects.filter(starts_on=dt.date(2020, 1, 1), executions=3).exists()
    assert "alpha: purged 3 execution(s), 6 event(s), 1 idempotency record(s); 1 child" in out
    assert {old_done, old_failed, old_cancelled}.isdisjoint(runs.ids())


def test_a_tenant_without_retention_and_other_tenants_are_untouched(alpha, bravo, plan_on):
    plan_on(alpha, retention_days=30)
    plan_on(bravo, retention_days=None, max_agents=50)  # a plan, but no retention
    alpha_runs, bravo_runs = runs_for(alpha), runs_for(bravo)
    alpha_old = alpha_runs.make(days_old=90)
    bravo_old = bravo_runs.make(days_old=900)

    out = purge()

    assert alpha_old not in alpha_runs.ids()
    assert bravo_runs.ids() == {bravo_old} and bravo_runs.event_owners() == {bravo_old}
    assert "bravo" not in out


def test_one_tenant_by_slug_leaves_the_others(alpha, bravo, plan_on):
    plan_on(alpha, retention_days=30)
    plan_on(bravo, retention_days=30)
    alpha_runs, bravo_runs = runs_for(alpha), runs_for(bravo)
    alpha_old = alpha_runs.make(days_old=90)
    bravo_runs.make(days_old=90)

    purge("--tenant", "bravo")

    assert alpha_runs.ids() == {alpha_old}
    assert bravo_runs.ids() == set()


def test_dry_run_counts_and_deletes_nothing(alpha, plan_on):
    plan_on(alpha, retention_days=7)
    runs = runs_for(alpha)
    made = {
        runs.make(days_old=8, events=3),
        runs.make(days_old=10, events=1),
        runs.make(days_old=1),
    }

    out = purge("--dry-run", "--tenant", "alpha")

    assert "alpha: would purge 2 execution(s), 4 event(s)" in out
    assert runs.ids() == made


def test_suspended_tenants_are_left_alone(alpha, plan_on):
    plan_on(alpha, retention_days=1)
    runs = runs_for(alpha)
    old = runs.make(days_old=5)
    with schema_context("public"):
        Tenant.objects.filter(pk=alpha.tenant.pk).update(status=TenantStatus.SUSPENDED)

    purge()
    with pytest.raises(CommandError, match="suspended"):
        purge("--tenant", "alpha")

    assert runs.ids() == {old}


def test_unknown_tenant_and_bad_batch_size_are_refused(alpha):
    with pytest.raises(CommandError, match="'nobody'"):
        purge("--tenant", "nobody")
    with pytest.raises(CommandError, match="--batch-size"):
        purge("--batch-size", "0")


def _outside_count(schema: str) -> int:
    """Executions of ``schema`` as another session sees them: only committed work."""
    db = connection.settings_dict
    params = {"dbname": db["NAME"], "user": db["USER"] or None, "password": db["PASSWORD"] or None}
    params.update({k: v for k, v in (("host", db["HOST"]), ("port", db["PORT"])) if v})
    with psycopg.connect(**params, autocommit=True) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{schema}".agents_execution').fetchone()
    assert row is not None
    return int(row[0])


def test_batches_are_separate_short_transactions(committed_personas, plan_on):
    alpha = committed_personas["alpha"]
    plan_on(alpha, retention_days=30)
    runs = runs_for(alpha)
    try:
        for _ in range(5):
            runs.make(days_old=60, events=1)
        fresh = runs.make(days_old=1)
        (target,) = retention_targets(tenant_slug="alpha")
        seen_outside: list[int] = []

        def observe(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
            if "FOR UPDATE SKIP LOCKED" in sql:
                # What others see as each batch starts: the previous batch is committed.
                seen_outside.append(_outside_count(alpha.schema))
            return execute(sql, params, many, context)

        with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(observe):
            result = purge_tenant(target, batch_size=2)

        batches = [q["sql"] for q in captured.captured_queries if "SKIP LOCKED" in q["sql"]]
        assert len(batches) == 3 and result.batches == 3  # 2 + 2 + 1
        assert all("LIMIT 2" in sql for sql in batches)
        assert seen_outside == [6, 4, 2]
        assert result.counts.executions == 5 and result.counts.events == 5
        assert runs.ids() == {fresh}
    finally:
        wipe(alpha)


def test_an_exact_multiple_of_the_batch_size_needs_one_empty_batch(alpha, plan_on):
    plan_on(alpha, retention_days=30)
    runs = runs_for(alpha)
    for _ in range(4):
        runs.make(days_old=60)
    (target,) = retention_targets(tenant_slug="alpha")
    result = purge_tenant(target, batch_size=2, now=timezone.now())
    assert (result.batches, result.counts.executions) == (3, 4)
    with schema_context(alpha.schema):
        assert not Execution.objects.exists()


def test_a_row_someone_holds_is_skipped_not_waited_for(committed_personas, plan_on):
    alpha = committed_personas["alpha"]
    plan_on(alpha, retention_days=30)
    runs = runs_for(alpha)
    db = connection.settings_dict
    params = {"dbname": db["NAME"], "user": db["USER"] or None, "password": db["PASSWORD"] or None}
    params.update({k: v for k, v in (("host", db["HOST"]), ("port", db["PORT"])) if v})
    try:
        held, *others = [runs.make(days_old=60) for _ in range(3)]
        (target,) = retention_targets(tenant_slug="alpha")
        with psycopg.connect(**params) as other:
            # Another transaction (a slow admin page, a backup) holds one of the rows.
            other.execute(
                f'SELECT 1 FROM "{alpha.schema}".agents_execution WHERE id = %s FOR UPDATE',
                [held],
            )
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '3s'")  # a wait would fail, not hang
            try:
                first = purge_tenant(target, batch_size=10)
            finally:
                with connection.cursor() as cursor:
                    cursor.execute("RESET lock_timeout")
            assert first.counts.executions == 2 and runs.ids() == {held}
        second = purge_tenant(target, batch_size=10)  # released: the next run takes it
        assert second.counts.executions == 1 and runs.ids() == set()
        assert set(others).isdisjoint(runs.event_owners())
    finally:
        wipe(alpha)
