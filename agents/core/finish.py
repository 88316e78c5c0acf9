"""Storing how a run ended: the terminal status and the terminal event in one transaction.

Exactly once: the UPDATE only moves an execution that is still ``running`` *with the start
time this run claimed it with*. A run that another path already ended (a sweeper failed it,
or restarted it on another worker) keeps that state, and this run's remaining events are not
written after someone else's end. Within the same transaction the rest of the event log goes
in (the held-back terminal event last), so whoever sees the status also finds the event.

While the database is unreachable (a restart, a failover) the result is kept in memory and the
transaction retried, for up to ``EXECUTION_STORE_PATIENCE_SECONDS``: a provider call that
completed is not thrown away because PostgreSQL blinked.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents.core.event_log import EventLog
from agents.core.hooks import run_ended
from agents.core.hub import get_hub
from agents.core.limits import settle
from agents.core.outage import DatabaseUnavailable, retry_while_down
from agents.engine import AttemptRecord, ExecutionResult
from agents.models import Execution, ExecutionEvent, ExecutionStatus
from tenants.context import in_schema

logger = logging.getLogger(__name__)


def attempt_json(attempt: AttemptRecord) -> dict[str, Any]:
    return {
        "model": attempt.model,
        "provider": attempt.provider_kind,
        "status": attempt.status,
        "error_kind": attempt.error_kind,
        "error_message": attempt.error_message,
        "latency_ms": attempt.latency_ms,
        "input_tokens": attempt.usage.input_tokens,
        "output_tokens": attempt.usage.output_tokens,
        "started_at": attempt.started_at.isoformat(),
    }


def terminal_fields(execution: Execution, result: ExecutionResult) -> dict[str, Any]:
    now = timezone.now()
    started = execution.started_at or now
    return {
        "status": result.status,
        "output": result.output,
        "context": result.context,
        "input_data": result.mapped_input,
        "error_code": result.error_code or "",
        "error_message": (result.error_message or "")[:4000],
        "attempts": [attempt_json(a) for a in result.attempts],
        "retry_count": max(len(result.attempts) - 1, 0),
        "model_used": result.model_used or "",
        "input_tokens": result.usage.input_tokens,
        "output_tokens": result.usage.output_tokens,
        "usage_estimated": result.usage.estimated,
        "cost": result.cost if isinstance(result.cost, Decimal) else Decimal(str(result.cost)),
        "completed_at": now,
        "duration_ms": max(int((now - started) / dt.timedelta(milliseconds=1)), 0),
    }


def store_terminal(
    execution: Execution, fields: dict[str, Any], rows: list[ExecutionEvent]
) -> Execution:
    """One transaction: the conditional UPDATE, then the remaining events. Returns the row as
    stored (ours, or the state another path ended it with). Runs in the execution's schema."""
    with transaction.atomic():
        updated = Execution.objects.filter(
            pk=execution.pk, status=ExecutionStatus.RUNNING, started_at=execution.started_at
        ).update(**fields)
        if updated:
            if rows:
                ExecutionEvent.objects.bulk_create(rows)
            for name, value in fields.items():
                setattr(execution, name, value)
            settle(execution)
            run_ended(execution)
            return execution
    logger.warning(
        "execution %s had already ended or moved on; this result is dropped", execution.pk
    )
    return Execution.objects.select_related("agent").get(pk=execution.pk)


async def finish(
    schema_name: str, execution: Execution, result: ExecutionResult, log: EventLog
) -> Execution:
    """Store the end of a run (after the log's flusher is done with what it took)."""
    await log.drain()
    fields = terminal_fields(execution, result)
    rows = log.take_rows(final=True)
    try:
        stored = await retry_while_down(
            lambda: in_schema(schema_name, store_terminal, execution, fields, rows),
            patience=settings.EXECUTION_STORE_PATIENCE_SECONDS,
            what=f"storing the end of execution {execution.pk}",
        )
    except DatabaseUnavailable:
        # Nothing more can be done here: the sweeper restarts or fails the run once the
        # database is back (it is still "running" with a job, or a foreground run past its time).
        logger.error("execution %s: result lost, the database stayed unreachable", execution.pk)
        raise
    get_hub().wake(schema_name, execution.pk)
    return stored
