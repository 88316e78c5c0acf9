"""Public entry points: :func:`run_agent` and :func:`start_agent`.

Cancellation keeps asyncio semantics. When the task running :func:`run_agent` is cancelled,
the engine closes the provider stream at once, emits ``usage`` and ``cancelled`` events and
re-raises ``CancelledError`` (swallowing it would break ``TaskGroup``, ``wait_for`` and
shutdown). Callers that want a result instead use :func:`start_agent`: :meth:`AgentRun.cancel`
stops the run and :meth:`AgentRun.result` then returns an ``ExecutionResult`` with status
``cancelled`` (with the usage, cost and attempts spent so far). If the task awaiting
``result()`` is itself cancelled, the run is cancelled too and ``CancelledError`` propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from agents.engine.breaker import BreakerRegistry, default_breakers
from agents.engine.events import Emit, discard
from agents.engine.pricing import PriceTable
from agents.engine.routing import ModelOption
from agents.engine.run_state import RunState
from agents.engine.tools import ToolRunner
from agents.engine.turns import ProviderFactory, Sleep
from agents.engine.types import (
    AgentSnapshot,
    CallConfig,
    ExecutionInput,
    ExecutionResult,
    SpendGate,
)


def _run_state(
    *,
    agent: AgentSnapshot,
    context: dict[str, Any],
    input: ExecutionInput,
    config: CallConfig | None,
    emit: Emit | None,
    tools: ToolRunner | None,
    prices: PriceTable | None,
    provider_factory: ProviderFactory | None,
    breakers: BreakerRegistry | None,
    sleep: Sleep,
    models: Sequence[ModelOption],
    gate: SpendGate | None = None,
) -> RunState:
    return RunState(
        agent=agent,
        context=context,
        execution_input=input,
        config=config or CallConfig(),
        emit=emit or discard,
        tools=tools,
        prices=prices or PriceTable(),
        provider_factory=provider_factory,
        breakers=breakers or default_breakers,
        sleep=sleep,
        models=tuple(models),
        gate=gate,
    )


async def run_agent(
    *,
    agent: AgentSnapshot,
    context: dict[str, Any],
    input: ExecutionInput,
    config: CallConfig | None = None,
    emit: Emit | None = None,
    tools: ToolRunner | None = None,
    prices: PriceTable | None = None,
    provider_factory: ProviderFactory | None = None,
    breakers: BreakerRegistry | None = None,
    sleep: Sleep = asyncio.sleep,
    models: Sequence[ModelOption] = (),
) -> ExecutionResult:
    """Execute ``agent`` once and return its result; never raises except ``CancelledError``.

    ``context`` is the generic execution context (``tenant_id``, ``execution_id``,
    ``user_context``, ``workflow_context``, ``custom_context``); it is deep-copied, and the
    result carries the updated copy. ``emit`` receives every event (see
    :mod:`agents.engine.events`). ``tools`` runs allow-listed tool calls. ``prices`` prices
    usage (unknown models cost 0 and are listed in ``unpriced_models``). ``provider_factory``
    defaults to ``agents.providers.get_provider``; ``breakers`` to the process-wide registry;
    ``sleep`` is the backoff sleep. ``models`` are the tenant's concrete options used to resolve
    a virtual model name (``auto``, ``cb:*``).
    """
    state = _run_state(
        agent=agent,
        context=context,
        input=input,
        config=config,
        emit=emit,
        tools=tools,
        prices=prices,
        provider_factory=provider_factory,
        breakers=breakers,
        sleep=sleep,
        models=models,
    )
    return await state.execute()


class AgentRun:
    """A started execution that can be cancelled and always yields an ``ExecutionResult``."""

    def __init__(self, state: RunState) -> None:
        self._state = state
        self._task: asyncio.Task[ExecutionResult] = asyncio.create_task(
            state.execute(), name=f"agent-run-{state.execution_id}"
        )

    @property
    def execution_id(self) -> str:
        """The execution id (from ``context["execution_id"]`` or generated)."""
        return self._state.execution_id

    def done(self) -> bool:
        """True once the run reached a terminal state."""
        return self._task.done()

    def cancel(self) -> None:
        """Stop the run: the provider stream is closed and the result becomes ``cancelled``."""
        self._task.cancel()

    async def result(self) -> ExecutionResult:
        """Wait for the terminal result (``cancelled`` if :meth:`cancel` stopped the run)."""
        try:
            return await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # Our caller is being cancelled (awaiting the task cancelled it as well).
                raise
            return self._state.result(
                "cancelled", error_code="cancelled", error_message="the execution was cancelled"
            )


def start_agent(
    *,
    agent: AgentSnapshot,
    context: dict[str, Any],
    input: ExecutionInput,
    config: CallConfig | None = None,
    emit: Emit | None = None,
    tools: ToolRunner | None = None,
    prices: PriceTable | None = None,
    provider_factory: ProviderFactory | None = None,
    breakers: BreakerRegistry | None = None,
    sleep: Sleep = asyncio.sleep,
    models: Sequence[ModelOption] = (),
    gate: SpendGate | None = None,
) -> AgentRun:
    """Start :func:`run_agent` as a task (same arguments) and return a cancellable handle.

    Must be called from a running event loop.
    """
    return AgentRun(
        _run_state(
            agent=agent,
            context=context,
            input=input,
            config=config,
            emit=emit,
            tools=tools,
            prices=prices,
            provider_factory=provider_factory,
            breakers=breakers,
            sleep=sleep,
            models=models,
            gate=gate,
        )
    )
