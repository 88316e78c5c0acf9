"""Cancelling runs, wherever they are.

- A run that has not started (pending, queued) ends here: its status and its terminal
  ``cancelled`` event are written in one transaction, and its waiting job is withdrawn.
- A running one is told to stop wherever it runs (``NOTIFY execution_cancel``; the process
  running it cancels the engine run, which closes the upstream call and stores ``cancelled``
  through :mod:`agents.core.finish`). Workers also look at ``cancel_requested_at`` now and then,
  in case the notification was missed.
- Children (agent-as-tool runs) are cancelled with their parent.

Sync functions, run in the execution's tenant schema.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from agents.core import queue
from agents.core.hooks import run_ended
from agents.core.hub import CANCEL_CHANNEL
from agents.models import TERMINAL_STATUSES, Execution, ExecutionEvent, ExecutionStatus
from tenants.audit.services import audit_record

NOT_STARTED = (ExecutionStatus.PENDING, ExecutionStatus.QUEUED)
TERMINAL_EVENT_OF = {
    ExecutionStatus.CANCELLED: "cancelled",
    ExecutionStatus.FAILED: "error",
    ExecutionStatus.TIMEOUT: "error",
}


def append_event(execution_id: str, kind: str, data: dict[str, Any]) -> int:
    """Append one event after the stored log (call inside a transaction holding the
    execution's row lock, so that two writers cannot pick the same seq)."""
    last = ExecutionEvent.objects.filter(execution_id=execution_id).aggregate(m=Max("seq"))["m"]
    seq = (last or 0) + 1
    ExecutionEvent.objects.create(execution_id=execution_id, seq=seq, type=kind, data=data)
    return seq


def end_unstarted(
    execution: Execution, *, status: ExecutionStatus, code: str, message: str
) -> bool:
    """End a run that is not running (pending/queued): terminal status and terminal event in
    one transaction. False when it had already left those states."""
    now = timezone.now()
    with transaction.atomic():
        ended = Execution.objects.filter(pk=execution.pk, status__in=NOT_STARTED).update(
            status=status, completed_at=now, error_code=code, error_message=message
        )
        if not ended:
            return False
        kind = TERMINAL_EVENT_OF[status]
        data: dict[str, Any] = {"code": code, "message": message}
        if kind == "cancelled":
            data = {"reason": message, "code": code}
        append_event(execution.pk, kind, data)
        execution.status = status
        execution.completed_at = now
        execution.error_code = code
        execution.error_message = message
        run_ended(execution)
    return True


def end_running(execution_id: str, *, code: str, message: str) -> bool:
    """Fail a run that is ``running`` but that nobody runs any more (its worker or web process
    died): status and terminal ``error`` event in one transaction. False if it already ended."""
    with transaction.atomic():
        execution = (
            Execution.objects.select_for_update()
            .filter(pk=execution_id, status=ExecutionStatus.RUNNING)
            .first()
        )
        if execution is None:
            return False
        now = timezone.now()
        started = execution.started_at or now
        ended = {
            "status": ExecutionStatus.FAILED,
            "error_code": code,
            "error_message": message,
            "completed_at": now,
            "duration_ms": max(int((now - started) / dt.timedelta(milliseconds=1)), 0),
        }
        append_event(execution_id, "error", {"code": code, "message": message})
        Execution.objects.filter(pk=execution_id).update(**ended)
        for name, value in ended.items():
            setattr(execution, name, value)
        run_ended(execution)
    return True


def _cancel_one(schema_name: str, execution: Execution, actor: str) -> None:
    Execution.objects.filter(pk=execution.pk, cancel_requested_at__isnull=True).update(
        cancel_requested_at=timezone.now()
    )
    if end_unstarted(
        execution,
        status=ExecutionStatus.CANCELLED,
        code="cancelled",
        message=f"cancelled by {actor}",
    ):
        # Withdraw its waiting job too, so that no worker slot is spent on it.
        queue.dequeue(schema_name=schema_name, execution_id=execution.pk)
        return
    if execution.status == ExecutionStatus.RUNNING:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_notify(%s, %s)", [CANCEL_CHANNEL, f"{schema_name}:{execution.pk}"]
            )


def cancel_requested(execution_id: str) -> bool:
    """Has someone asked this execution to stop? (A worker's backstop for a missed NOTIFY.)"""
    return Execution.objects.filter(pk=execution_id, cancel_requested_at__isnull=False).exists()


def cancel_execution(*, schema_name: str, execution: Execution, actor: str) -> dict[str, Any]:
    """Ask an execution and all its child executions to stop. Idempotent; returns a receipt
    (``status`` is terminal when the run ended here, else it is still stopping)."""
    cancelled: list[str] = []
    frontier = [execution]
    while frontier:
        current = frontier.pop()
        if current.status not in TERMINAL_STATUSES:
            _cancel_one(schema_name, current, actor)
            cancelled.append(current.pk)
        frontier.extend(
            Execution.objects.filter(parent=current).exclude(status__in=TERMINAL_STATUSES)
        )
    audit_record(
        schema_name=schema_name,
        actor=actor,
        action="execution.cancel",
        target_type="execution",
        target_id=execution.pk,
        details={"requested": cancelled},
    )
    status = Execution.objects.values_list("status", flat=True).get(pk=execution.pk)
    return {
        "execution_id": execution.pk,
        "status": status,
        "cancel_requested": bool(cancelled),
        "executions": cancelled,
    }
