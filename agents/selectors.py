"""Reads of agents and executions, in the current schema (the request's tenant, or one entered
with ``schema_context``). Each function answers one of the plan's storage queries."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Avg, Count, Max, Q, QuerySet

from agents.engine import VIRTUAL_MODELS
from agents.models import Agent, Execution, ExecutionEvent, ExecutionStatus, ModelPrice
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


def _price(value: Any) -> str:
    return format(value.normalize(), "f")


def model_catalog() -> dict[str, Any]:
    """What the tenant may call: the models of its credentials (the price table's routable rows
    and the models its enabled agents use), the virtual models and whether any model can back
    them, and the prices of models without a credential of their own."""
    rows = list(ModelPrice.objects.select_related("credential").filter(enabled=True))
    priced = {row.model: row for row in rows if row.credential is None}
    models: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        if row.credential is None:
            continue
        models[(row.credential.name, row.model)] = {
            "model": row.model,
            "credential": row.credential.name,
            "provider": row.credential.kind,
            "input_per_million": _price(row.input_per_million),
            "output_per_million": _price(row.output_per_million),
            "capabilities": list(row.capabilities or []),
            "routable": True,
        }
    agents = Agent.objects.select_related("credential").filter(enabled=True)
    for agent in agents:
        key = (agent.credential.name, agent.model)
        if key in models or agent.model in VIRTUAL_MODELS:
            continue
        price = priced.get(agent.model)
        models[key] = {
            "model": agent.model,
            "credential": agent.credential.name,
            "provider": agent.credential.kind,
            "input_per_million": _price(price.input_per_million) if price else None,
            "output_per_million": _price(price.output_per_million) if price else None,
            "capabilities": list(price.capabilities or []) if price else [],
            # Through an agent's credential only: virtual models do not route to it.
            "routable": False,
        }
    routable = any(entry["routable"] for entry in models.values())
    return {
        "models": sorted(models.values(), key=lambda m: (m["model"], m["credential"])),
        "virtual_models": [
            {"model": name, "available": routable} for name in sorted(VIRTUAL_MODELS)
        ],
        "prices": [
            {
                "model": row.model,
                "input_per_million": _price(row.input_per_million),
                "output_per_million": _price(row.output_per_million),
            }
            for row in sorted(priced.values(), key=lambda r: r.model)
        ],
    }
