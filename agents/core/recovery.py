"""Runs whose worker (or web process) was lost: restarted once, then failed; never left running.

- A background run whose job lost its worker (no heartbeat) is restarted from the beginning
  (``WORKER_LOST_MAX_RESTARTS``): its event log continues after the last stored event with a
  ``reset`` event (``discard_from_sequence: 1``) that tells every client to drop the partial
  text it received; after that it fails with ``worker_lost``.
- A run with no waiting or running job although it is queued or running (its job vanished, or
  the task died while the database was away) is re-queued the same way.
- A run that ran in a web process (no job at all) and outlived any allowed timeout is failed.

The sweeper (:mod:`agents.tasks`) finds candidates with :func:`suspect_executions` and
decides with :func:`recover_lost_run`. Sync functions; the per-run ones run in the run's schema.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from agents.core.cancel import append_event, end_running
from agents.core.queue import RUN_TASK, tenant_schemas
from agents.models import Execution, ExecutionEvent, ExecutionStatus

WORKER_LOST = "worker_lost"
RESTART_MESSAGE = "restarted after worker loss"

Recovery = Literal["restart", "failed", "requeue", "done"]


def restarts_so_far(execution_id: str) -> int:
    return ExecutionEvent.objects.filter(
        execution_id=execution_id, type="reset", data__reason=WORKER_LOST
    ).count()


def recover_lost_run(execution_id: str, max_restarts: int) -> Recovery:
    """Decide what becomes of an execution whose job lost its worker (run in its schema).

    ``running``: restarted (a ``reset`` event says so, the status goes back to ``queued``)
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
        restarts = restarts_so_far(execution_id)
        if restarts < max_restarts:
            append_event(
                execution_id,
                "reset",
                {
                    "reason": WORKER_LOST,
                    "message": RESTART_MESSAGE,
                    "discard_from_sequence": 1,
                    "restart": restarts + 1,
                },
            )
            # started_at changes with the next claim: a run of the lost worker that comes back
            # to life finds it changed and stores nothing (see agents.core.finish).
            Execution.objects.filter(pk=execution_id).update(
                status=ExecutionStatus.QUEUED, started_at=None
            )
            return "restart"
        message = f"the worker running this execution was lost ({restarts} restart(s) tried)"
        return "failed" if end_running(execution_id, code=WORKER_LOST, message=message) else "done"


def fail_lost_run(execution_id: str) -> Recovery:
    """Fail a lost run outright (no restart): for foreground runs, whose caller is gone."""
    return recover_lost_run(execution_id, max_restarts=0)


@dataclass(frozen=True)
class Suspect:
    schema_name: str
    execution_id: str
    status: str
    started_at: dt.datetime | None


def _suspects_sql(schema: str, table: str) -> str:
    # Identifiers come from the tenant table and are quoted; every value is a parameter.
    qualified = f"{connection.ops.quote_name(schema)}.{connection.ops.quote_name(table)}"
    return (
        f"SELECT %s, id, status, started_at FROM {qualified} WHERE "  # noqa: S608
        "(status = 'running' AND started_at < now() - make_interval(secs => %s)) OR "
        # pending: a run stored by an older release that its web process never claimed.
        "(status IN ('queued', 'pending') AND created_at < now() - make_interval(secs => %s))"
    )


def suspect_executions(grace_seconds: float, chunk: int = 200) -> list[Suspect]:
    """Executions, in every tenant, that may have lost their job: ``running``, ``queued`` or
    ``pending`` for longer than ``grace_seconds``. One UNION query per ``chunk`` tenants, each
    using the status index; the caller checks the queue for each."""
    table = Execution._meta.db_table
    schemas = tenant_schemas()
    found: list[Suspect] = []
    for start in range(0, len(schemas), chunk):
        parts: list[str] = []
        params: list[str | float] = []
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
    """The job states of each suspect's run jobs (only todo/doing ones when ``active_only``:
    that part of the table is small and indexed)."""
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
