"""Claiming a run: moving a stored execution to ``running`` and loading what the engine needs.

A run always executes the agent version it was created with (``Execution.agent_version``): a
queued or restarted run built from the agent's *current* configuration would run something
its caller never asked for. A queued run of an agent disabled meanwhile is cancelled with the
reason, not run.

Every function here is sync and runs in the execution's tenant schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from agents.core.cancel import end_unstarted
from agents.core.requests import RunRequest
from agents.core.run_config import prices_for_run, snapshot_for_run
from agents.engine import AgentSnapshot, ModelOption, PriceTable
from agents.models import Agent, Execution, ExecutionEvent, ExecutionStatus
from config.errors import NotFound
from tenants.plans import NO_LIMITS, Limits, limits_for

AGENT_DISABLED = "agent_disabled"
VERSION_UNAVAILABLE = "agent_version_unavailable"


@dataclass(frozen=True)
class Claimed:
    """A run that is ours to execute: the row (``running``) and the engine's inputs."""

    schema_name: str
    execution: Execution
    request: RunRequest
    snapshot: AgentSnapshot
    prices: PriceTable
    models: tuple[ModelOption, ...]
    # Where the event log continues (1 for a first run; after the stored log for a restart).
    next_seq: int = 1
    # Agent-as-tool nesting depth of this run (0 for runs callers started).
    depth: int = 0
    # The tenant's plan, as admission or the claim read it (the run's quota gate uses it).
    limits: Limits = NO_LIMITS

    @property
    def execution_id(self) -> str:
        return self.execution.id


def request_of(execution: Execution) -> RunRequest:
    """The request a stored execution was created with (what a worker needs to run it)."""
    options = execution.options or {}
    return RunRequest(
        agent_ref=execution.agent_id,
        context=execution.context,
        message=execution.request_input.get("message"),
        parameters=execution.request_input.get("parameters") or {},
        timeout_seconds=options.get("timeout_seconds"),
        retry=options.get("retry"),
        input_mapping=options.get("input_mapping"),
        output_mapping=options.get("output_mapping"),
        model=options.get("model"),
        mode="background",
        notify=options.get("notify"),
    )


def load_for_run(
    schema_name: str,
    *,
    agent: Agent,
    execution: Execution,
    request: RunRequest,
    next_seq: int = 1,
    depth: int = 0,
    limits: Limits = NO_LIMITS,
    prices: tuple[PriceTable, tuple[ModelOption, ...]] | None = None,
) -> Claimed:
    """What the engine needs for ``execution``: the snapshot of the version it pinned (the
    agent row itself when that is still current: no query; cached with the row when ``agent``
    is the cached one, ``agents.core.run_config``), prices and routable models (``prices``:
    already read by the caller; else the cached table)."""
    snapshot = snapshot_for_run(schema_name, agent, execution.agent_version)
    table, models = prices if prices is not None else prices_for_run(schema_name)
    return Claimed(
        schema_name, execution, request, snapshot, table, models, next_seq, depth, limits
    )


ClaimOutcome = Literal["claimed", "at_capacity", "nothing"]


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    claimed: Claimed | None = None


def claim_stored(schema_name: str, execution_id: str, *, cap: int | None = None) -> Claim:
    """Move a queued (or pending) execution to ``running`` unless it was cancelled, already
    ran, or its tenant already runs ``cap`` executions (0: no cap; None: the tenant plan's
    ``max_concurrent_executions``, else ``TENANT_MAX_CONCURRENT_EXECUTIONS``).

    The count and the claim share one transaction under a per-tenant advisory lock: two
    workers starting jobs of one tenant at once cannot both take the last slot. A run whose
    agent is disabled, or whose pinned version can no longer be loaded, ends here with the
    reason (status and terminal event together).
    """
    limits = limits_for(schema_name)
    if cap is None:
        planned = limits.max_concurrent_executions
        cap = planned if planned is not None else settings.TENANT_MAX_CONCURRENT_EXECUTIONS
    with transaction.atomic():
        execution = (
            Execution.objects.select_for_update(of=("self",))
            .select_related("agent__credential")
            .filter(
                pk=execution_id,
                status__in=[ExecutionStatus.PENDING, ExecutionStatus.QUEUED],
                cancel_requested_at__isnull=True,
            )
            .first()
        )
        if execution is None:
            return Claim("nothing")
        if not execution.agent.enabled:
            end_unstarted(
                execution,
                status=ExecutionStatus.CANCELLED,
                code=AGENT_DISABLED,
                message="the agent was disabled before this run started",
            )
            return Claim("nothing")
        if cap > 0:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    [f"cba:tenant-cap:{schema_name}"],
                )
            if Execution.objects.filter(status=ExecutionStatus.RUNNING).count() >= cap:
                return Claim("at_capacity")
        last = ExecutionEvent.objects.filter(execution_id=execution_id).aggregate(m=Max("seq"))
        try:
            claimed = load_for_run(
                schema_name,
                agent=execution.agent,
                execution=execution,
                request=request_of(execution),
                next_seq=(last["m"] or 0) + 1,
                limits=limits,
            )
        except NotFound as exc:
            end_unstarted(
                execution,
                status=ExecutionStatus.FAILED,
                code=VERSION_UNAVAILABLE,
                message=exc.message,
            )
            return Claim("nothing")
        now = timezone.now()
        Execution.objects.filter(pk=execution_id).update(
            status=ExecutionStatus.RUNNING, started_at=now
        )
        execution.status = ExecutionStatus.RUNNING
        execution.started_at = now
        return Claim("claimed", claimed)
