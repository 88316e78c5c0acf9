"""Reads of agents and executions, in the current schema (the request's tenant, or one entered
with ``schema_context``). Each function answers one of the plan's storage queries."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Avg, Count, Max, Q, QuerySet

from agents.models import Agent, Execution, ExecutionEvent, ExecutionStatus
from config.errors import NotFound


def _nested(path: str, value: Any) -> dict[str, Any]:
    """``("a.b.c", 1)`` → ``{"a": {"b": {"c": 1}}}``: a containment filter for a nested path."""
    *outer, innermost = path.split(".")
    result: dict[str, Any] = {innermost: value}
    for part in reversed(outer):
        result = {part: result}
    return result


def execution_list(
    *,
    agent: Agent | None = None,
    status: str | Iterable[str] | None = None,
    context_filters: dict[str, Any] | None = None,
    resource_id: str | None = None,
) -> QuerySet[Execution]:
    """Executions, newest first, filtered by agent, status, context values and resource.

    ``context_filters`` maps dot paths to values (``{"user_context.user_id": "u1"}``); all must
    match. They compile to JSON containment (``context @> {...}``), which the GIN index serves.
    """
    queryset = Execution.objects.all()
    if agent is not None:
        queryset = queryset.filter(agent=agent)
    if status:
        queryset = (
            queryset.filter(status=status)
            if isinstance(status, str)
            else queryset.filter(status__in=list(status))
        )
    for path, value in (context_filters or {}).items():
        queryset = queryset.filter(context__contains=_nested(path, value))
    if resource_id is not None:
        queryset = queryset.filter(
            Q(context__contains={"workflow_context": {"resource_id": resource_id}})
            | Q(context__contains={"resource_id": resource_id})
        )
    return queryset.order_by("-created_at")


def execution_count_by_context(path: str, value: Any) -> int:
    return execution_list(context_filters={path: value}).count()


def execution_recent(limit: int = 20) -> list[Execution]:
    return list(Execution.objects.order_by("-created_at")[:limit])


def execution_find(execution_id: str) -> Execution | None:
    """An execution of the current schema (with its agent), or None."""
    return Execution.objects.select_related("agent").filter(pk=execution_id).first()


def execution_page(offset: int, limit: int) -> list[Execution]:
    """Executions newest first, ``limit`` of them from ``offset`` (with their agents)."""
    return list(
        Execution.objects.select_related("agent").order_by("-created_at", "-id")[
            offset : offset + limit
        ]
    )


def execution_last_seq(execution_id: str) -> int | None:
    """The sequence number of the execution's last stored event (0: none yet); None when the
    current schema has no such execution."""
    if not Execution.objects.filter(pk=execution_id).exists():
        return None
    found = ExecutionEvent.objects.filter(execution_id=execution_id).aggregate(last=Max("seq"))
    return int(found["last"] or 0)


def execution_get(execution_id: str, *, agent: Agent | None = None) -> Execution:
    queryset = Execution.objects.select_related("agent")
    if agent is not None:
        queryset = queryset.filter(agent=agent)
    execution = queryset.filter(pk=execution_id).first()
    if execution is None:
        raise NotFound("Execution not found.")
    return execution


def agent_stats(agent: Agent | None = None) -> dict[str, Any]:
    """total, completed, failed, running and the average duration of finished runs
    (per agent, or for the whole tenant)."""
    queryset = Execution.objects.all() if agent is None else Execution.objects.filter(agent=agent)
    stats = queryset.aggregate(
        total=Count("id"),
        completed=Count("id", filter=Q(status=ExecutionStatus.COMPLETED)),
        failed=Count("id", filter=Q(status__in=[ExecutionStatus.FAILED, ExecutionStatus.TIMEOUT])),
        running=Count("id", filter=Q(status__in=[ExecutionStatus.RUNNING, ExecutionStatus.QUEUED])),
        avg_duration_ms=Avg("duration_ms", filter=Q(duration_ms__isnull=False)),
    )
    if stats["avg_duration_ms"] is not None:
        stats["avg_duration_ms"] = round(float(stats["avg_duration_ms"]), 1)
    return stats
