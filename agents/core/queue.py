"""The job queue under background runs: procrastinate's tables in the public schema.

A job names its tenant and execution in its args (``schema_name``, ``execution_id``), which is
how we find the job of an execution without storing job ids on our own rows. Jobs are deferred
by task *name* (the task itself lives in :mod:`agents.tasks`, which imports the core; the core
never imports it).

- **Fairness**: a job's priority is ``-(executions this tenant already has queued or running)``,
  never above the tenant's own waiting jobs (so one tenant's jobs stay first in, first out).
  Workers take the highest priority first, so a light tenant's job passes a heavy tenant's
  backlog instead of waiting behind it.
- **Tenancy**: a job for no tenant, for ``public`` or for a schema no tenant owns is refused.

Every function here is sync: tenant rows are read inside ``schema_context`` (via
``run_in_schema``), queue rows with schema-qualified SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from asgiref.sync import sync_to_async
from django.db import connection
from django_tenants.utils import schema_context
from procrastinate import tasks
from procrastinate.contrib.django import app
from procrastinate.contrib.django.django_connector import DjangoConnector
from procrastinate.manager import JobManager
from procrastinate.types import TimeDeltaParams

from agents.models import Execution, ExecutionStatus
from tenants.context import MissingTenant, require_tenant_schema, run_in_schema

EXECUTIONS_QUEUE = "executions"
MAINTENANCE_QUEUE = "maintenance"
RUN_TASK = "agents.run_execution"
ACTIVE_JOB_STATES = ("todo", "doing")


# Jobs deferred from sync code go through Django's own connection, in web processes and workers
# alike: they join the caller's transaction (a rolled-back write leaves no job, a committed one
# always has its job). The app's connector is the worker's own pool inside a worker.
_in_transaction = JobManager(DjangoConnector())


def defer(
    task_name: str,
    *,
    queue: str,
    priority: int = 0,
    schedule_in_seconds: float | None = None,
    lock: str | None = None,
    queueing_lock: str | None = None,
    **task_kwargs: str | int,
) -> int:
    """Defer a job of ``task_name`` in the caller's transaction (sync). Returns its id.
    ``lock``: jobs with the same lock run one at a time, in order; ``queueing_lock``: raises
    procrastinate's ``AlreadyEnqueued`` while a job with that lock is waiting (a failed
    INSERT: inside a transaction, catch it in a savepoint)."""
    delay: TimeDeltaParams | None = None
    if schedule_in_seconds is not None and schedule_in_seconds > 0:
        delay = {"milliseconds": int(schedule_in_seconds * 1000)}
    deferrer = tasks.configure_task(
        name=task_name,
        job_manager=_in_transaction,
        queue=queue,
        priority=priority,
        schedule_in=delay,
        lock=lock,
        queueing_lock=queueing_lock,
    )
    return int(deferrer.defer(**task_kwargs))


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


def tenant_schemas() -> list[str]:
    """Every tenant schema that has its tables (one being created may not yet)."""
    from tenants.models import Tenant

    with schema_context("public"):
        schemas = list(
            Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True)
        )
    table = Execution._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s FROM unnest(%s::text[]) AS s "
            "WHERE to_regclass(quote_ident(s) || '.' || quote_ident(%s)) IS NOT NULL",
            [schemas, table],
        )
        return [row[0] for row in cursor.fetchall()]


# ---- enqueueing ----


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
            "SELECT min(priority) FROM public.procrastinate_jobs WHERE status = 'todo' "
            "AND queue_name = %s AND task_name = %s AND args->>'schema_name' = %s",
            [EXECUTIONS_QUEUE, RUN_TASK, schema_name],
        )
        lowest = cursor.fetchone()[0]
    return priority if lowest is None else min(priority, int(lowest))


def enqueue(*, schema_name: str, execution_id: str) -> int:
    """Queue a stored execution; returns the job id. Sync: joins the caller's transaction, so
    a rolled-back request leaves no job. Refuses a missing or unknown tenant schema."""
    require_live_tenant(schema_name)
    priority = enqueue_priority(schema_name, execution_id)
    return defer(
        RUN_TASK,
        queue=EXECUTIONS_QUEUE,
        priority=priority,
        schema_name=schema_name,
        execution_id=execution_id,
    )


async def enqueue_async(*, schema_name: str, execution_id: str) -> int:
    """From a worker: its connector is async-only (the sync ``defer`` is for web processes)."""
    priority = await sync_to_async(enqueue_priority)(schema_name, execution_id)
    return await app.configure_task(
        RUN_TASK, queue=EXECUTIONS_QUEUE, priority=priority
    ).defer_async(schema_name=schema_name, execution_id=execution_id)


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


def dequeue(*, schema_name: str, execution_id: str) -> int:
    """Withdraw a cancelled execution's jobs: waiting ones are cancelled, a running one is
    asked to abort. Returns how many jobs were reached."""
    require_tenant_schema(schema_name)
    reached = 0
    for job_id in execution_job_ids(schema_name, execution_id):
        if app.job_manager.cancel_job_by_id(job_id, abort=True):
            reached += 1
    return reached


# ---- where a run stands ----


def queue_position(schema_name: str, execution_id: str) -> int | None:
    """Where a queued execution stands among its own tenant's waiting jobs: 1 means no job of
    this tenant is ahead of it. ``None`` when it has no waiting job (running, finished,
    cancelled, unknown). Other tenants' jobs are not counted: how busy the platform is for
    others is not this tenant's business.

    Ordered like workers pick jobs: priority (highest first), then job id.
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
                     WHERE j.status = 'todo' AND j.queue_name = %s AND j.task_name = %s
                       AND j.args->>'schema_name' = %s
                       AND (j.priority > me.priority
                            OR (j.priority = me.priority AND j.id < me.id))) + 1
              FROM me
            """,
            [
                EXECUTIONS_QUEUE,
                RUN_TASK,
                job_args(schema_name, execution_id),
                EXECUTIONS_QUEUE,
                RUN_TASK,
                schema_name,
            ],
        )
        row = cursor.fetchone()
    return None if row is None else int(row[0])
