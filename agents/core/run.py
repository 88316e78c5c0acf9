"""Running a claimed execution: the engine, fed from and writing to the stored event log.

This is the only place that calls the engine. Whatever started the run (a blocking request, a
stream, a worker, an agent tool), the run writes its events as they happen (watchers anywhere
see it live), answers cancel requests from any process, and stores its end exactly once
(:mod:`agents.core.finish`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from django.conf import settings

from agents.core.admission import Origin, admit
from agents.core.claim import Claimed
from agents.core.event_log import EventLog
from agents.core.finish import finish
from agents.core.hub import get_hub
from agents.core.limits import gate_for
from agents.core.requests import RunRequest
from agents.engine import (
    DEFAULT_RETRY_ON,
    AgentRun,
    CallConfig,
    CompositeToolRunner,
    ExecutionInput,
    ExecutionResult,
    RetryConfig,
    ToolCallContext,
    ToolOutcome,
    start_agent,
)
from agents.mcp.client import McpToolRunner
from agents.models import Execution, ExecutionStatus
from agents.providers.http_tool import HttpTool
from config.errors import DomainError
from config.logs import bound_run
from config.metrics import observe_execution
from tenants.context import in_schema

# Agent-as-tool calls may nest this deep (an agent calling an agent calling an agent).
MAX_AGENT_TOOL_DEPTH = 3
# A blocking run writes its events live once it has lasted this long: a quick one stores its
# whole log with its end (fewer statements per run), a long one is still watched live.
BLOCKING_LIVE_AFTER_SECONDS = 0.05

logger = logging.getLogger(__name__)


def call_config(request: RunRequest) -> CallConfig:
    """The engine's per-call overrides from a run request."""
    params = request.parameters
    retry = None
    if request.retry:
        retry = RetryConfig(
            max_attempts=int(request.retry.get("max_attempts", 3)),
            backoff_seconds=float(request.retry.get("backoff_seconds", 10)),
            retry_on_errors=tuple(request.retry.get("retry_on_errors", DEFAULT_RETRY_ON)),
        )
    return CallConfig(
        input_mapping=request.input_mapping,
        output_mapping=request.output_mapping,
        timeout_seconds=request.timeout_seconds,
        retry=retry,
        model=request.model,
        temperature=params.get("temperature"),
        max_tokens=params.get("max_tokens"),
        top_p=params.get("top_p"),
        frequency_penalty=params.get("frequency_penalty"),
        presence_penalty=params.get("presence_penalty"),
        stop_sequences=request.stop or None,
    )


class AgentToolRunner:
    """Runs an agent of the same tenant as a tool: a child execution, linked to its parent,
    admitted and run through the same core as every other run."""

    def __init__(self, claimed: Claimed) -> None:
        self.claimed = claimed

    async def call(
        self, name: str, arguments: dict[str, Any], *, context: ToolCallContext
    ) -> ToolOutcome:
        parent = self.claimed
        if parent.depth >= MAX_AGENT_TOOL_DEPTH:
            return ToolOutcome(f"agent tools may nest at most {MAX_AGENT_TOOL_DEPTH} deep", True)
        target = str(context.definition.config.get("agent", ""))
        message = arguments.get("message")
        child = RunRequest(
            agent_ref=target,
            context={"custom_context": {"arguments": arguments}},
            message=message if isinstance(message, str) else json.dumps(arguments, default=str),
        )
        origin = Origin(
            actor=parent.execution.principal,
            request_id=parent.execution.request_id,
            parent_id=parent.execution_id,
            depth=parent.depth + 1,
        )
        try:
            admitted = await in_schema(parent.schema_name, admit, parent.schema_name, child, origin)
        except DomainError as exc:
            return ToolOutcome(exc.message, True)
        assert admitted.claimed is not None  # a blocking run is claimed at admission
        execution = await run_claimed(admitted.claimed)
        if execution.status != ExecutionStatus.COMPLETED:
            return ToolOutcome(
                f"agent {target} ended {execution.status}: {execution.error_message}", True
            )
        output = execution.output
        return ToolOutcome(
            output if isinstance(output, str) else json.dumps(output, default=str), False
        )


def tool_runner(claimed: Claimed) -> CompositeToolRunner:
    return CompositeToolRunner(
        {
            "http": HttpTool(allowed_private=tuple(settings.PROVIDER_ALLOWED_PRIVATE)),
            "agent": AgentToolRunner(claimed),
            "mcp": McpToolRunner(claimed.schema_name),
        }
    )


async def run_claimed(claimed: Claimed) -> Execution:
    """Run a claimed execution to its terminal state and return the stored row.

    A cancel request (from any process) ends it as ``cancelled`` and it returns normally. If
    the task running this is cancelled (a caller that went away and asked for it), the run is
    cancelled, stored as ``cancelled``, and ``CancelledError`` propagates.

    Every log line written while it runs names the execution, its tenant and principal, and
    the request that started it (for a background run: the stored ``request_id``).
    """
    execution = claimed.execution
    with bound_run(
        execution_id=claimed.execution_id,
        tenant=claimed.schema_name,
        principal=execution.principal,
        request_id=execution.request_id,
    ):
        stored = await _run(claimed)
        if stored is execution:  # this run stored the end (not a sweeper, not another run)
            observe_execution(
                status=stored.status,
                mode=claimed.request.mode,
                input_tokens=stored.input_tokens,
                output_tokens=stored.output_tokens,
                cost=float(stored.cost),
                duration_ms=stored.duration_ms,
                attempts=stored.attempts,
            )
        if logger.isEnabledFor(logging.INFO):
            _log_end(claimed, stored)
    return stored


def _log_end(claimed: Claimed, stored: Execution) -> None:
    # Ids, sizes and timings always; the prompt and the output only with the tenant's consent
    # (Tenant.log_content): they are the tenant's data.
    if claimed.limits.log_content:
        logger.info(
            "execution ended: status=%s mode=%s tokens=%d/%d duration_ms=%s prompt=%s output=%s",
            stored.status,
            claimed.request.mode,
            stored.input_tokens,
            stored.output_tokens,
            stored.duration_ms,
            json.dumps(claimed.request.message, default=str),
            json.dumps(stored.output, default=str),
        )
    else:
        logger.info(
            "execution ended: status=%s mode=%s tokens=%d/%d duration_ms=%s",
            stored.status,
            claimed.request.mode,
            stored.input_tokens,
            stored.output_tokens,
            stored.duration_ms,
        )


async def _run(claimed: Claimed) -> Execution:
    schema_name = claimed.schema_name
    request = claimed.request
    log = EventLog(
        schema_name=schema_name,
        execution_id=claimed.execution_id,
        next_seq=claimed.next_seq,
        live_after=BLOCKING_LIVE_AFTER_SECONDS if request.mode == "blocking" else 0.0,
    )
    run = start_agent(
        agent=claimed.snapshot,
        context=claimed.execution.context,
        input=ExecutionInput(
            message=request.message,
            parameters=request.parameters,
            messages=request.messages,
            client_tools=request.client_tools,
        ),
        config=call_config(request),
        emit=log.emit,
        tools=tool_runner(claimed),
        prices=claimed.prices,
        models=claimed.models,
        gate=gate_for(schema_name, claimed.execution, claimed.limits, claimed.prices),
    )
    log.on_superseded = run.cancel
    with get_hub().running(schema_name, claimed.execution_id, run.cancel):
        try:
            result = await run.result()
        except asyncio.CancelledError:
            # Our caller went away: stop the run, let it close upstream, store it.
            run.cancel()
            result = await asyncio.shield(_settle(run))
            await asyncio.shield(finish(schema_name, claimed.execution, result, log))
            raise
    return await finish(schema_name, claimed.execution, result, log)


async def _settle(run: AgentRun) -> ExecutionResult:
    return await run.result()
