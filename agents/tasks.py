"""Background work on the job queue (procrastinate: PostgreSQL-based, durable, no extra
infrastructure). A thin transport over the execution core: every task takes the tenant schema
as an argument, refuses a job without a live tenant, and hands the run to ``agents.core``.

Run a worker with ``python manage.py worker``. The rules (fairness, caps, recovery) live in
``agents.core.queue``, ``agents.core.claim`` and ``agents.core.recovery``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random

from asgiref.sync import sync_to_async
from django.conf import settings
from procrastinate import RetryDecision
from procrastinate.contrib.django import app
from procrastinate.jobs import Job, Status
from procrastinate.retry import BaseRetryStrategy
from structlog.contextvars import bind_contextvars

from agents.core import queue, recovery
from agents.core.cancel import cancel_requested
from agents.core.claim import Claim, claim_stored
from agents.core.hub import get_hub
from agents.core.idempotency import idempotency_purge
from agents.core.run import run_claimed
from agents.mcp.sessions import subscriptions_purge
from agents.retention import purge_tenant_async, retention_targets
from config.database import database_outage, database_unavailable
from tenants.context import in_schema

logger = logging.getLogger(__name__)

# The orphan sweep reads every tenant's executions table: less often than the stalled-job one.
ORPHAN_SWEEP_EVERY_SECONDS = 30


class TenantAtCapacity(Exception):
    """The job's tenant already runs its maximum of executions: try again shortly."""


class CapRetry(BaseRetryStrategy):
    """Retry, after a jittered pause, jobs held back by their tenant's cap and jobs that met an
    unreachable database (before their run was claimed: a claimed run stores its own end, and
    a retried job finds nothing to run); the job keeps its id and priority, so it keeps its
    place in the queue. Any other error fails the job (runs store their own errors; a crash
    mid-run is the sweeper's business)."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, TenantAtCapacity):
            delay = settings.TENANT_CAP_RETRY_SECONDS * random.uniform(0.8, 1.2)
        elif database_unavailable(exception):
            delay = settings.DATABASE_RETRY_AFTER_SECONDS * random.uniform(0.5, 1.0)
        else:
            return None
        # What retry_in computes, written out: procrastinate types retry_in's values as int,
        # and the pause is a float.
        return RetryDecision(retry_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay))


@app.task(name=queue.RUN_TASK, queue=queue.EXECUTIONS_QUEUE, retry=CapRetry())
async def run_execution(schema_name: str, execution_id: str) -> str:
    """Run a stored (queued) execution to its terminal state. Returns what happened."""
    # The job's own lines name it; the run binds the rest from the stored execution (its
    # principal and the request id of the request that queued it).
    bind_contextvars(tenant=schema_name, execution_id=execution_id)
    await sync_to_async(queue.require_live_tenant)(schema_name)
    claim: Claim = await in_schema(
        schema_name,
        claim_stored,
        schema_name,
        execution_id,
    )
    if claim.outcome == "at_capacity":
        raise TenantAtCapacity(schema_name)
    if claim.claimed is None:
        logger.info("execution %s had nothing to run (cancelled or already run)", execution_id)
        return "nothing to run"
    watcher = asyncio.create_task(_watch_cancel(schema_name, execution_id))
    try:
        execution = await run_claimed(claim.claimed)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return execution.status


async def _watch_cancel(schema_name: str, execution_id: str) -> None:
    """Backstop for the cancel NOTIFY: one sent before the run registered with the hub, or
    while the hub was reconnecting, would be lost. Looks at the row now and then instead."""
    while True:
        await asyncio.sleep(settings.WORKER_CANCEL_CHECK_SECONDS)
        try:
            requested = await in_schema(schema_name, cancel_requested, execution_id)
        except Exception:  # the database is away: the run goes on; look again later
            logger.debug("cancel check for %s failed", execution_id, exc_info=True)
            continue
        if requested:
            # Once: a second cancel() could interrupt the run while it winds down.
            get_hub().cancel_local(schema_name, execution_id)
            return


# ---- the sweeper ----


async def _retry_job(job_id: int) -> None:
    await app.job_manager.retry_job_by_id_async(job_id=job_id, retry_at=dt.datetime.now(dt.UTC))


def heartbeats_trustworthy() -> bool:
    """False for a while after this process saw the database go away: nobody could beat
    meanwhile, so every heartbeat looks stale, and a sweep now would restart runs that are
    still alive. Live workers beat again within a heartbeat of the database coming back."""
    if database_outage.count == 0:
        return True
    return database_outage.steady_for() >= settings.WORKER_STALLED_AFTER_SECONDS


async def recover_stalled_jobs() -> dict[str, int]:
    """Jobs left ``doing`` by a worker without a heartbeat for WORKER_STALLED_AFTER_SECONDS
    (killed, frozen, cut off): restart, requeue or fail their executions, then retry or close
    the jobs. Returns counts per outcome."""
    counts: dict[str, int] = {}
    if not heartbeats_trustworthy():
        return counts
    stalled = await app.job_manager.get_stalled_jobs(
        queue=queue.EXECUTIONS_QUEUE,
        task_name=queue.RUN_TASK,
        seconds_since_heartbeat=settings.WORKER_STALLED_AFTER_SECONDS,
    )
    for job in stalled:
        assert job.id is not None
        schema_name = str(job.task_kwargs.get("schema_name") or "")
        execution_id = str(job.task_kwargs.get("execution_id") or "")
        if not await sync_to_async(queue.tenant_schema_exists)(schema_name):
            outcome = "no_tenant"
        else:
            outcome = await in_schema(
                schema_name,
                recovery.recover_lost_run,
                execution_id,
                settings.WORKER_LOST_MAX_RESTARTS,
            )
        if outcome in ("restart", "requeue"):
            await _retry_job(job.id)
        else:
            # "done": the run had ended before its worker died; otherwise this job is over.
            status = Status.SUCCEEDED if outcome == "done" else Status.FAILED
            await app.job_manager.finish_job_by_id_async(
                job_id=job.id, status=status, delete_job=False
            )
        logger.warning("stalled job %s (execution %s): %s", job.id, execution_id, outcome)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


async def recover_orphaned_executions() -> dict[str, int]:
    """Executions whose job is gone although they are not finished: ``running`` with only
    finished jobs (the task died mid-run, e.g. the database went away), ``queued`` with no
    waiting job (the job was lost or never written), or a foreground run that has outlived
    any allowed timeout. Returns counts per outcome."""
    counts: dict[str, int] = {}
    if not heartbeats_trustworthy():
        return counts
    suspects = await sync_to_async(recovery.suspect_executions)(
        settings.WORKER_STALLED_AFTER_SECONDS
    )
    active = await sync_to_async(recovery.jobs_by_execution)(suspects, active_only=True)
    orphans = [s for s in suspects if (s.schema_name, s.execution_id) not in active]
    history = await sync_to_async(recovery.jobs_by_execution)(orphans, active_only=False)
    for suspect in orphans:
        schema_name, execution_id = suspect.schema_name, suspect.execution_id
        # queued with no job, or pending (accepted but never claimed): run it as accepted.
        if (schema_name, execution_id) in history or suspect.status in ("queued", "pending"):
            outcome = await in_schema(
                schema_name,
                recovery.recover_lost_run,
                execution_id,
                settings.WORKER_LOST_MAX_RESTARTS,
            )
            if outcome in ("restart", "requeue"):
                await queue.enqueue_async(schema_name=schema_name, execution_id=execution_id)
        elif recovery.foreground_run_is_dead(suspect):
            outcome = await in_schema(schema_name, recovery.fail_lost_run, execution_id)
        else:
            continue
        logger.warning("orphaned execution %s/%s: %s", schema_name, execution_id, outcome)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


@app.periodic(cron=f"* * * * * */{settings.WORKER_SWEEP_SECONDS}", periodic_id="sweep")
@app.task(name="agents.sweep_executions", queue=queue.MAINTENANCE_QUEUE, queueing_lock="sweep")
async def sweep_executions(timestamp: int) -> dict[str, int]:
    """Periodic (every WORKER_SWEEP_SECONDS, on one worker at a time): recover lost runs."""
    counts = await recover_stalled_jobs()
    if timestamp % ORPHAN_SWEEP_EVERY_SECONDS < settings.WORKER_SWEEP_SECONDS:
        for outcome, n in (await recover_orphaned_executions()).items():
            counts[outcome] = counts.get(outcome, 0) + n
    return counts


@app.periodic(cron="17 * * * *", periodic_id="cleanup")
@app.task(name="agents.delete_old_jobs", queue=queue.MAINTENANCE_QUEUE, queueing_lock="cleanup")
async def delete_old_jobs(timestamp: int) -> None:
    """Hourly: finished jobs past WORKER_JOB_RETENTION_HOURS go (the events table grows ~3
    rows per job), and so do expired idempotency records and stale MCP subscriptions."""
    await app.job_manager.delete_old_jobs(
        nb_hours=settings.WORKER_JOB_RETENTION_HOURS,
        include_failed=True,
        include_cancelled=True,
        include_aborted=True,
    )
    # Idempotency keys past their lifetime, in every tenant.
    for schema_name in await sync_to_async(queue.tenant_schemas)():
        await in_schema(schema_name, idempotency_purge)
        await in_schema(schema_name, subscriptions_purge)


@app.periodic(cron=settings.RETENTION_CRON, periodic_id="retention")
@app.task(name="agents.purge_expired", queue=queue.MAINTENANCE_QUEUE, queueing_lock="retention")
async def purge_expired_executions(timestamp: int) -> dict[str, int]:
    """Hourly by default (RETENTION_CRON): every active tenant whose plan has
    ``retention_days`` loses its ended executions older than that, in short batches
    (``agents.retention``). Returns the executions purged per tenant."""
    purged: dict[str, int] = {}
    for target in await sync_to_async(retention_targets)():
        result = await purge_tenant_async(target)
        purged[target.slug] = result.counts.executions
    return purged
