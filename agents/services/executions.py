"""Running an agent as a stored execution.

``execution_run`` is what every interface calls (REST, WebSocket, MCP, workflows, jobs): it
creates the ``Execution`` row, runs the engine outside any request (the schema is named
explicitly for every query), stores the event log, and writes the terminal state once.

Database work of one blocking execution: agent (+credential), prices, INSERT execution, then
one batch of events and one UPDATE at the end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from agents.engine import (
    AgentRun,
    AgentSnapshot,
    CallConfig,
    CompositeToolRunner,
    ExecutionInput,
    ExecutionResult,
    ModelOption,
    ModelTarget,
    PriceTable,
    RetryConfig,
    ToolCallContext,
    ToolOutcome,
    start_agent,
)
from agents.models import TERMINAL_STATUSES, Agent, Execution, ExecutionStatus, ModelPrice
from agents.providers.http_tool import HttpTool
from agents.services.agents import agent_get, agent_snapshot
from agents.services.credentials import provider_config_for
from agents.services.event_log import EventLog
from agents.streaming.hub import CANCEL_CHANNEL, get_hub
from config.errors import ValidationFailed
from tenants.audit.services import audit_record
from tenants.context import in_schema

logger = logging.getLogger(__name__)

# Agent-as-tool calls may nest this deep (an agent calling an agent calling an agent).
MAX_AGENT_TOOL_DEPTH = 3
NON_TERMINAL = [ExecutionStatus.PENDING, ExecutionStatus.QUEUED, ExecutionStatus.RUNNING]


@dataclass(frozen=True)
class ExecutionRequest:
    """What a caller asks for; validated by the interface, trusted here."""

    agent_ref: str
    context: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: float | None = None
    retry: dict[str, Any] | None = None
    input_mapping: dict[str, str] | None = None
    output_mapping: dict[str, str] | None = None
    principal: str = ""
    request_id: str = ""
    parent_id: str | None = None
    depth: int = 0


@dataclass(frozen=True)
class Prepared:
    execution: Execution
    execution_id: str
    snapshot: AgentSnapshot
    context: dict[str, Any]
    prices: PriceTable
    models: tuple[ModelOption, ...]
    request: ExecutionRequest


def _options(request: ExecutionRequest) -> dict[str, Any]:
    return {
        key: value
        for key, value in {
            "timeout_seconds": request.timeout_seconds,
            "retry": request.retry,
            "input_mapping": request.input_mapping,
            "output_mapping": request.output_mapping,
        }.items()
        if value is not None
    }


def _new_execution(
    schema_name: str, agent: Agent, request: ExecutionRequest, status: str
) -> Execution:
    if not agent.enabled:
        raise ValidationFailed("agent_id: the agent is disabled")
    execution = Execution(
        agent=agent,
        agent_version=agent.version,
        request_input={"message": request.message, "parameters": request.parameters},
        options=_options(request),
        status=status,
        started_at=timezone.now() if status == ExecutionStatus.RUNNING else None,
        requested_model=agent.model,
        parent_id=request.parent_id,
        principal=request.principal[:200],
        request_id=request.request_id[:128],
    )
    # The platform owns tenant_id and execution_id in the context: a caller cannot set them.
    execution.context = {**request.context, "tenant_id": schema_name, "execution_id": execution.id}
    execution.save(force_insert=True)
    return execution


def _loaded(agent: Agent, execution: Execution, request: ExecutionRequest) -> Prepared:
    snapshot = agent_snapshot(agent)
    price_rows = list(ModelPrice.objects.select_related("credential").filter(enabled=True))
    prices = PriceTable(
        {row.model: (row.input_per_million, row.output_per_million) for row in reversed(price_rows)}
    )
    models = tuple(
        ModelOption(
            ModelTarget(provider_config_for(row.credential), row.model), frozenset(row.capabilities)
        )
        for row in price_rows
        if row.credential is not None
    )
    return Prepared(execution, execution.id, snapshot, execution.context, prices, models, request)


def _prepare(schema_name: str, request: ExecutionRequest, agent: Agent | None = None) -> Prepared:
    # ``agent``: the caller already loaded it (with its credential) from this schema.
    agent = agent if agent is not None else agent_get(request.agent_ref)
    execution = _new_execution(schema_name, agent, request, ExecutionStatus.RUNNING)
    return _loaded(agent, execution, request)


def execution_create(
    *, schema_name: str, request: ExecutionRequest, status: str = ExecutionStatus.QUEUED
) -> Execution:
    """Store an execution to run later (background): validated and visible at once. Runs in
    the current schema (sync)."""
    return _new_execution(schema_name, agent_get(request.agent_ref), request, status)


def _request_of(execution: Execution) -> ExecutionRequest:
    options = execution.options or {}
    return ExecutionRequest(
        agent_ref=execution.agent_id,
        context=execution.context,
        message=execution.request_input.get("message"),
        parameters=execution.request_input.get("parameters") or {},
        timeout_seconds=options.get("timeout_seconds"),
        retry=options.get("retry"),
        input_mapping=options.get("input_mapping"),
        output_mapping=options.get("output_mapping"),
        principal=execution.principal,
        request_id=execution.request_id,
        parent_id=execution.parent_id,
    )


def _claim(schema_name: str, execution_id: str) -> Prepared | None:
    """Move a stored execution to ``running`` (only from pending/queued) and load what the
    engine needs. None when it was cancelled or already ran."""
    updated = Execution.objects.filter(
        pk=execution_id,
        status__in=[ExecutionStatus.PENDING, ExecutionStatus.QUEUED],
        cancel_requested_at__isnull=True,
    ).update(status=ExecutionStatus.RUNNING, started_at=timezone.now())
    if not updated:
        return None
    execution = Execution.objects.select_related("agent__credential").get(pk=execution_id)
    return _loaded(execution.agent, execution, _request_of(execution))


def _finish(
    schema_name: str, execution: Execution, result: ExecutionResult, rows: list[Any]
) -> Execution:
    """Store the event batch, then the terminal state, in two statements.

    The UPDATE is conditional: status only moves forward, so a run that another path already
    ended (a cancel, the sweeper) keeps its state. Events go first so that anyone who sees a
    terminal status also finds the terminal event.
    """
    from agents.models import ExecutionEvent

    if rows:
        ExecutionEvent.objects.bulk_create(rows)
    now = timezone.now()
    started = execution.started_at or now
    fields: dict[str, Any] = {
        "status": result.status,
        "output": result.output,
        "context": result.context,
        "input_data": result.mapped_input,
        "error_code": result.error_code or "",
        "error_message": (result.error_message or "")[:4000],
        "attempts": [_attempt_json(a) for a in result.attempts],
        "retry_count": max(len(result.attempts) - 1, 0),
        "model_used": result.model_used or "",
        "input_tokens": result.usage.input_tokens,
        "output_tokens": result.usage.output_tokens,
        "usage_estimated": result.usage.estimated,
        "cost": result.cost if isinstance(result.cost, Decimal) else Decimal(str(result.cost)),
        "completed_at": now,
        "duration_ms": max(int((now - started) / dt.timedelta(milliseconds=1)), 0),
    }
    updated = Execution.objects.filter(pk=execution.pk, status__in=NON_TERMINAL).update(**fields)
    if not updated:
        return Execution.objects.get(pk=execution.pk)
    for name, value in fields.items():
        setattr(execution, name, value)
    return execution


def _attempt_json(attempt: Any) -> dict[str, Any]:
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


def _call_config(request: ExecutionRequest) -> CallConfig:
    params = request.parameters
    retry = None
    if request.retry:
        retry = RetryConfig(
            max_attempts=int(request.retry.get("max_attempts", 3)),
            backoff_seconds=float(request.retry.get("backoff_seconds", 10)),
            retry_on_errors=tuple(
                request.retry.get("retry_on_errors", ("timeout", "rate_limit", "network_error"))
            ),
        )
    return CallConfig(
        input_mapping=request.input_mapping,
        output_mapping=request.output_mapping,
        timeout_seconds=request.timeout_seconds,
        retry=retry,
        temperature=params.get("temperature"),
        max_tokens=params.get("max_tokens"),
        top_p=params.get("top_p"),
        frequency_penalty=params.get("frequency_penalty"),
        presence_penalty=params.get("presence_penalty"),
    )


class AgentToolRunner:
    """Runs an agent of the same tenant as a tool: a child execution, linked to its parent."""

    def __init__(self, *, schema_name: str, request: ExecutionRequest, parent_id: str) -> None:
        self.schema_name = schema_name
        self.request = request
        self.parent_id = parent_id

    async def call(
        self, name: str, arguments: dict[str, Any], *, context: ToolCallContext
    ) -> ToolOutcome:
        if self.request.depth >= MAX_AGENT_TOOL_DEPTH:
            return ToolOutcome(f"agent tools may nest at most {MAX_AGENT_TOOL_DEPTH} deep", True)
        target = str(context.definition.config.get("agent", ""))
        message = arguments.get("message") if isinstance(arguments.get("message"), str) else None
        child = ExecutionRequest(
            agent_ref=target,
            context={"custom_context": {"arguments": arguments}},
            message=message if message is not None else _json(arguments),
            parameters={},
            principal=self.request.principal,
            request_id=self.request.request_id,
            parent_id=self.parent_id,
            depth=self.request.depth + 1,
        )
        try:
            execution = await execution_run(schema_name=self.schema_name, request=child)
        except ValidationFailed as exc:
            return ToolOutcome(exc.message, True)
        if execution.status != ExecutionStatus.COMPLETED:
            return ToolOutcome(
                f"agent {target} ended {execution.status}: {execution.error_message}", True
            )
        output = execution.output
        return ToolOutcome(output if isinstance(output, str) else _json(output), False)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


def tool_runner_for(
    schema_name: str, request: ExecutionRequest, execution_id: str
) -> CompositeToolRunner:
    return CompositeToolRunner(
        {
            "http": HttpTool(allowed_private=tuple(settings.PROVIDER_ALLOWED_PRIVATE)),
            "agent": AgentToolRunner(
                schema_name=schema_name, request=request, parent_id=execution_id
            ),
        }
    )


async def execution_run(
    *,
    schema_name: str,
    request: ExecutionRequest,
    listener: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    live: bool = False,
    provider_factory: Any = None,
    agent: Agent | None = None,
) -> Execution:
    """Create and run one execution to its terminal state; return the stored row.

    ``listener`` sees every event as it is emitted; ``live`` writes events as they come (for
    watchers) instead of once at the end. A cancel request (``execution_cancel``, from any
    process) ends the run as ``cancelled`` and returns normally; cancelling the *calling* task
    also cancels the run, stores it as ``cancelled`` and re-raises ``CancelledError``.
    """
    prepared = await in_schema(schema_name, _prepare, schema_name, request, agent)
    return await _run_prepared(
        schema_name, prepared, listener=listener, live=live, provider_factory=provider_factory
    )


async def execution_run_stored(
    *,
    schema_name: str,
    execution_id: str,
    listener: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    provider_factory: Any = None,
) -> Execution | None:
    """Run an execution stored by ``execution_create`` (the worker's entry point). Returns None
    when there is nothing to run (cancelled while queued, or already run)."""
    prepared = await in_schema(schema_name, _claim, schema_name, execution_id)
    if prepared is None:
        return None
    return await _run_prepared(
        schema_name, prepared, listener=listener, live=True, provider_factory=provider_factory
    )


async def _run_prepared(
    schema_name: str,
    prepared: Prepared,
    *,
    listener: Callable[[dict[str, Any]], Awaitable[None]] | None,
    live: bool,
    provider_factory: Any,
    next_seq: int = 1,
) -> Execution:
    """Run a claimed execution. ``next_seq`` > 1 continues a stored event log (a run restarted
    after its worker was lost keeps the events it already had)."""
    request = prepared.request
    log = EventLog(
        schema_name=schema_name,
        execution_id=prepared.execution_id,
        live=live,
        listener=listener,
        next_seq=next_seq,
    )
    kwargs: dict[str, Any] = {}
    if provider_factory is not None:
        kwargs["provider_factory"] = provider_factory
    run = start_agent(
        agent=prepared.snapshot,
        context=prepared.context,
        input=ExecutionInput(message=request.message, parameters=request.parameters),
        config=_call_config(request),
        emit=log.emit,
        tools=tool_runner_for(schema_name, request, prepared.execution_id),
        prices=prepared.prices,
        models=prepared.models,
        **kwargs,
    )
    with get_hub().running(schema_name, prepared.execution_id, run.cancel):
        try:
            result = await run.result()
        except asyncio.CancelledError:
            # Our caller went away: stop the run, wait for it to close upstream, store it.
            run.cancel()
            result = await asyncio.shield(_settle(run))
            await asyncio.shield(_store(schema_name, prepared, result, log))
            raise
    return await _store(schema_name, prepared, result, log)


async def _settle(run: AgentRun) -> ExecutionResult:
    return await run.result()


async def _store(
    schema_name: str, prepared: Prepared, result: ExecutionResult, log: EventLog
) -> Execution:
    await log.drain()
    return await in_schema(
        schema_name, _finish, schema_name, prepared.execution, result, log.take_rows(final=True)
    )


def _cancel_one(schema_name: str, execution: Execution, actor: str) -> str:
    """Cancel one execution: a queued one ends here; a running one is told to stop wherever it
    runs (NOTIFY), and ends as cancelled there."""
    now = timezone.now()
    Execution.objects.filter(pk=execution.pk, cancel_requested_at__isnull=True).update(
        cancel_requested_at=now
    )
    ended = Execution.objects.filter(
        pk=execution.pk, status__in=[ExecutionStatus.PENDING, ExecutionStatus.QUEUED]
    ).update(
        status=ExecutionStatus.CANCELLED,
        completed_at=now,
        error_code="cancelled",
        error_message=f"cancelled by {actor}",
    )
    if ended:
        from agents.models import ExecutionEvent
        from agents.tasks import execution_dequeue  # tasks imports this module

        # Withdraw its waiting job too, so no worker slot is spent on it.
        execution_dequeue(schema_name=schema_name, execution_id=execution.pk)

        last = (
            ExecutionEvent.objects.filter(execution=execution)
            .order_by("-seq")
            .values_list("seq", flat=True)
            .first()
        )
        ExecutionEvent.objects.create(
            execution=execution, seq=(last or 0) + 1, type="cancelled", data={}
        )
        return ExecutionStatus.CANCELLED
    if execution.status == ExecutionStatus.RUNNING:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_notify(%s, %s)", [CANCEL_CHANNEL, f"{schema_name}:{execution.pk}"]
            )
    return Execution.objects.values_list("status", flat=True).get(pk=execution.pk)


def execution_cancel(*, schema_name: str, execution: Execution, actor: str) -> dict[str, Any]:
    """Ask an execution and all its child executions to stop. Idempotent; returns a receipt.
    Runs in the current schema (sync)."""
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


def execution_run_sync(*, schema_name: str, request: ExecutionRequest) -> Execution:
    """Blocking wrapper for sync callers (admin actions, commands)."""
    from asgiref.sync import async_to_sync

    return async_to_sync(execution_run)(schema_name=schema_name, request=request)
