"""Fair scheduling of background executions across tenants, and recovery from lost workers.

The queue is procrastinate's ``procrastinate_jobs`` table (public schema); a job names its
tenant and execution in its args (``schema_name``, ``execution_id``), which is how we find the
job of an execution without storing job ids on our own rows.

- **Fairness**: a job's priority is ``-(executions this tenant already has queued or running)``,
  but never above the tenant's own waiting jobs (so one tenant's jobs stay first in, first out).
  Workers take the highest priority first, so a light tenant's job passes a heavy tenant's
  backlog instead of waiting behind it.
- **Caps**: ``TENANT_MAX_CONCURRENT_EXECUTIONS`` is checked when a job starts, under a
  per-tenant advisory lock, in the same transaction that moves the execution to ``running``.
- **Worker loss**: a run whose worker died is started again from the beginning once
  (``WORKER_LOST_MAX_RESTARTS``), its event log continuing after the last stored event; after
  that it fails with ``worker_lost``. Either way it never stays ``running``.

Every function here is sync: tenant rows are read inside ``schema_context`` (via
``run_in_schema``/``in_schema``), queue rows with schema-qualified SQL.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import Execution, ExecutionEvent, ExecutionStatus
from agents.services.executions import Prepared, _claim
from tenants.context import MissingTenant, require_tenant_schema, run_in_schema

EXECUTIONS_QUEUE = "executions"
RUN_TASK = "agents.run_execution"
WORKER_LOST = "worker_lost"
RESTART_MESSAGE = "restarted after worker loss"
ACTIVE_JOB_STATES = ("todo", "doing")


def job_args(schema_name: str, execution_id: str) -> str:
    return json.dumps({"schema_name": schema_name, "execution_id": execution_id})


# ---- tenants ----


def tenant_schema_exists(schema_name: str) -> bool:
    """True when ``schema_name`` is a live tenant's schema (never ``public``)."""
    from tenants.models import Tenant

    if not schema_name or schema_name == "public":
        return False
    with schema_context("public"):
        return Tenant.objects.filter(schema_name=schema_name).exists()


def require_live_tenant(schema_name: str) -> str:
    """Refuse work for no tenant, for ``public`` or for a schema no tenant owns."""
    require_tenant_schema(schema_name)
    if not tenant_schema_exists(schema_name):
        raise MissingTenant(f"no tenant has the schema {schema_name!r}")
    return schema_name


# ---- fairness and queue position ----


def enqueue_priority(schema_name: str, execution_id: str) -> int:
    """The priority a new job of this tenant gets: minus its load, never ahead of its own
    waiting jobs (equal priority then falls back to job id, i.e. arrival order)."""

    def load() -> int:
        return (
            Execution.objects.filter(status__in=[ExecutionStatus.QUEUED, ExecutionStatus.RUNNING])
            .exclude(pk=execution_id)
            .count()
        )

    priority = -run_in_schema(schema_name, load)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(priority) FROM public.procrastinate_jobs WHERE status = 'todo' AND queue_name = %s "
            "AND task_name = %s AND args->>'schema_name' = %s",
            [EXECUTIONS_QUEUE, RUN_TASK, schema_name],
        )
        lowest = cursor.fetchone()[0]
    return priority if lowest is None else min(priority, int(lowest))


def execution_queue_position(schema_name: str, execution_id: str) -> int | None:
    """Where a queued execution stands in the queue: 1 means it is the next job a worker
    takes. ``None`` when it has no waiting job (running, finished, cancelled, unknown).

    Computed like the workers pick jobs: waiting jobs of the executions queue ordered by
    priority (highest first), then job id. Jobs held back by a tenant cap count as ahead.
    Safe across tenants: the job is looked up by this tenant's schema and the execution id.
    """
    require_tenant_schema(schema_name)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH me AS (
                SELECT id, priority FROM public.procrastinate_jobs
                 WHERE status = 'todo' AND queue_name = %s AND task_name = %s
                   AND args @> %s::jsonb
                 ORDER BY id LIMIT 1
            )
            SELECT (SELECT count(*) FROM public.procrastinate_jobs j
                     WHERE j.status = 'todo' AND j.queue_name = %s
                       AND (j.priority > me.priority
                            OR (j.priority = me.priority AND j.id < me.id))) + 1
              FROM me
            """,
            [
                EXECUTIONS_QUEUE,
                RUN_TASK,
                job_args(schema_name, execution_id),
                EXECUTIONS_QUEUE,
            ],
        )
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def execution_job_ids(
    schema_name: str, execution_id: str, states: Iterable[str] = ACTIVE_JOB_STATES
) -> list[int]:
    """Ids of this execution's jobs in the given states (oldest first)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM public.procrastinate_jobs WHERE task_name = %s AND args @> %s::jsonb "
            "AND status::text = ANY(%s) ORDER BY id",
            [RUN_TASK, job_args(schema_name, execution_id), list(states)],
        )
        return [int(row[0]) for row in cursor.fetchall()]


# ---- starting a job: the cap ----


@dataclass(frozen=True)
class Claim:
    outcome: Literal["claimed", "at_capacity", "nothing"]
    prepared: Prepared | None = None
    # Where the run's event log continues (1 for a first run; after the log for a restart).
    next_seq: int = 1


def claim_within_cap(schema_name: str, execution_id: str, cap: int) -> Claim:
    """Move a queued execution to ``running`` unless it was cancelled, already ran, or its
    tenant already runs ``cap`` executions (0: no cap). Run inside the tenant's schema.

    The count and the claim share one transaction under a per-tenant advisory lock: two
    workers starting jobs of one tenant at once cannot both take the last slot.
    """
    with transaction.atomic():
        claimable = Execution.objects.filter(
            pk=execution_id,
            status__in=[ExecutionStatus.PENDING, ExecutionStatus.QUEUED],
            cancel_requested_at__isnull=True,
        ).exists()
        if not claimable:
            return Claim("nothing")
        if cap > 0:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    [f"cba:tenant-cap:{schema_name}"],
                )
            if Execution.objects.filter(status=ExecutionStatus.RUNNING).count() >= cap:
                return Claim("at_capacity")
        prepared = _claim(schema_name, execution_id)
        if prepared is None:
            return Claim("nothing")
        last = ExecutionEvent.objects.filter(execution_id=execution_id).aggregate(m=Max("seq"))
        return Claim("claimed", prepared, (last["m"] or 0) + 1)


# ---- worker loss ----

Recovery = Literal["restart", "failed", "requeue", "done"]


def _append_event(execution_id: str, kind: str, data: dict[str, object]) -> int:
    last = ExecutionEvent.objects.filter(execution_id=execution_id).aggregate(m=Max("seq"))["m"]
    seq = (last or 0) + 1
    ExecutionEvent.objects.create(execution_id=execution_id, seq=seq, type=kind, data=data)
    return seq


def recover_lost_run(execution_id: str, max_restarts: int) -> Recovery:
    """Decide what becomes of an execution whose job lost its worker (run in its schema).

    ``running``: restarted (a ``thinking`` event says so, the status goes back to ``queued``)
    while it has been restarted fewer than ``max_restarts`` times, else failed ``worker_lost``
    with a terminal ``error`` event. ``queued``/``pending``: it never started, run it again.
    Terminal or gone: nothing to do. The row lock keeps two sweepers from both acting.
    """
    with transaction.atomic():
        execution = (
            Execution.objects.select_for_update()
            .filter(pk=execution_id)
            .only("status", "started_at")
            .first()
        )
        if execution is None or execution.is_terminal:
            return "done"
        if execution.status != ExecutionStatus.RUNNING:
            return "requeue"
        restarts = ExecutionEvent.objects.filter(
            execution_id=execution_id, type="thinking", data__reason=WORKER_LOST
        ).count()
        if restarts < max_restarts:
            _append_event(
                execution_id,
                "thinking",
                {"message": RESTART_MESSAGE, "reason": WORKER_LOST, "restart": restarts + 1},
            )
            Execution.objects.filter(pk=execution_id).update(
                status=ExecutionStatus.QUEUED, started_at=None
            )
            return "restart"
        message = f"the worker running this execution was lost ({restarts} restart(s) tried)"
        _append_event(execution_id, "error", {"code": WORKER_LOST, "message": message})
        now = timezone.now()
        started = execution.started_at or now
        Execution.objects.filter(pk=execution_id, status=ExecutionStatus.RUNNING).update(
            status=ExecutionStatus.FAILED,
            error_code=WORKER_LOST,
            error_message=message,
            completed_at=now,
            duration_ms=max(int((now - started) / dt.timedelta(milliseconds=1)), 0),
        )
        return "failed"


@dataclass(frozen=True)
class Suspect:
    schema_name: str
    execution_id: str
    status: str
    started_at: dt.datetime | None


def tenant_schemas() -> list[str]:
    from tenants.models import Tenant

    with schema_context("public"):
        schemas = list(
            Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True)
        )
    # A tenant being created may not have its schema or tables yet: skip it this time.
    table = Execution._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s FROM unnest(%s::text[]) AS s "
            "WHERE to_regclass(quote_ident(s) || '.' || quote_ident(%s)) IS NOT NULL",
            [schemas, table],
        )
        return [row[0] for row in cursor.fetchall()]


def _suspects_sql(schema: str, table: str) -> str:
    # Identifiers come from the tenant table and are quoted; every value is a parameter.
    qualified = f"{connection.ops.quote_name(schema)}.{connection.ops.quote_name(table)}"
    return (
        f"SELECT %s, id, status, started_at FROM {qualified} WHERE "  # noqa: S608
        "(status = 'running' AND started_at < now() - make_interval(secs => %s)) OR "
        # pending: a streamed run whose web process died before it claimed the run.
        "(status IN ('queued', 'pending') AND created_at < now() - make_interval(secs => %s))"
    )


def suspect_executions(grace_seconds: float, chunk: int = 200) -> list[Suspect]:
    """Executions, in every tenant, that may have lost their job: ``running``, ``queued`` or
    ``pending`` for longer than ``grace_seconds``. One UNION query per ``chunk`` tenants, each using the
    status index; the caller checks the queue for each."""
    table = Execution._meta.db_table
    schemas = tenant_schemas()
    found: list[Suspect] = []
    for start in range(0, len(schemas), chunk):
        parts: list[str] = []
        params: list[object] = []
        for schema in schemas[start : start + chunk]:
            parts.append(_suspects_sql(schema, table))
            params += [schema, grace_seconds, grace_seconds]
        with connection.cursor() as cursor:
            cursor.execute(" UNION ALL ".join(parts), params)
            found += [Suspect(*row) for row in cursor.fetchall()]
    return found


def jobs_by_execution(
    suspects: Iterable[Suspect], *, active_only: bool
) -> dict[tuple[str, str], set[str]]:
    """The job states of each suspect's run_execution jobs (only todo/doing ones when
    ``active_only``: that part of the table is small and indexed)."""
    ids = sorted({s.execution_id for s in suspects})
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT args->>'schema_name', args->>'execution_id', status::text "
            "FROM public.procrastinate_jobs WHERE task_name = %s "
            "AND args->>'execution_id' = ANY(%s) AND (NOT %s OR status IN ('todo', 'doing'))",
            [RUN_TASK, ids, active_only],
        )
        result: dict[tuple[str, str], set[str]] = {}
        for schema, execution_id, status in cursor.fetchall():
            result.setdefault((schema, execution_id), set()).add(status)
    return result


def foreground_run_is_dead(suspect: Suspect) -> bool:
    """A run with no job at all ran in a web process; past the longest allowed execution
    (plus margin) nobody is running it any more."""
    if suspect.status != ExecutionStatus.RUNNING or suspect.started_at is None:
        return False
    limit = dt.timedelta(seconds=settings.AGENT_MAX_TIMEOUT_SECONDS + 120)
    return timezone.now() - suspect.started_at > limit


def fail_lost_run(execution_id: str) -> Recovery:
    """Fail a lost run outright (no restart): for foreground runs, whose caller is gone."""
    return recover_lost_run(execution_id, max_restarts=0)
