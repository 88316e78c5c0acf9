"""One run of an agent: input → prompt → model turns (retries, fallbacks, tools) → output.

:class:`RunState` holds the mutable state of a run so that a cancelled run can still report
what it spent; :mod:`agents.engine.runner` holds the public entry points. (It is not the ORM
``agents.models.Execution``, which stores a run; the engine knows nothing of storage.)
"""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from agents.engine.breaker import BreakerRegistry
from agents.engine.errors import EngineError, ToolStepLimit
from agents.engine.events import Emit, EventSink, now_iso
from agents.engine.mapping import (
    apply_output_mapping,
    check_output_mapping,
    map_input,
    validate_input,
    validate_schema,
)
from agents.engine.pricing import PriceTable
from agents.engine.prompts import build_system_prompt, build_user_message, initial_messages
from agents.engine.routing import ModelOption, is_virtual, resolve_model
from agents.engine.schemas import PatternTimeout
from agents.engine.tools import ToolCallContext, ToolOutcome, ToolRunner, wrap_untrusted
from agents.engine.turns import ProviderFactory, Sleep, Turn, TurnFailed, TurnRunner
from agents.engine.types import (
    AgentSnapshot,
    CallConfig,
    ExecutionInput,
    ExecutionResult,
    ExecutionStatus,
    ModelTarget,
    SpendGate,
    ToolDefinition,
)
from agents.providers.base import ErrorKind, Message, ToolCall, ToolSpec, Usage

logger = logging.getLogger(__name__)

# Keeps one runaway tool from flooding the model's context window (and the bill).
MAX_TOOL_RESULT_CHARS = 100_000


def _default_provider_factory() -> ProviderFactory:
    # Lazy: the providers package imports httpx transports the engine does not need otherwise.
    from agents.providers import get_provider

    return get_provider


def client_tool_output(turn: Turn) -> dict[str, Any]:
    """The output of a run that ended on calls of the caller's own tools."""
    return {
        "content": turn.text,
        "tool_calls": [
            {"id": call.id, "name": call.name, "arguments": call.arguments}
            for call in turn.tool_calls
        ],
    }


class RunState:
    """The mutable state of one execution; :class:`~agents.engine.runner.AgentRun` reads it to
    build a partial result after a cancel."""

    def __init__(
        self,
        *,
        agent: AgentSnapshot,
        context: dict[str, Any],
        execution_input: ExecutionInput,
        config: CallConfig,
        emit: Emit,
        tools: ToolRunner | None,
        prices: PriceTable,
        provider_factory: ProviderFactory | None,
        breakers: BreakerRegistry,
        sleep: Sleep,
        models: tuple[ModelOption, ...],
        gate: SpendGate | None = None,
    ) -> None:
        self.agent = agent
        self.context: dict[str, Any] = copy.deepcopy(dict(context))
        self.input = execution_input
        self.config = config
        self.sink = EventSink(emit)
        self.tools = tools
        self.prices = prices
        self.provider_factory = provider_factory
        self.breakers = breakers
        self.sleep = sleep
        self.models = models
        self.gate = gate
        self.execution_id = str(self.context.get("execution_id") or f"exec_{uuid.uuid4()}")
        self.requested_model = config.model or agent.model
        self.mapped_input: dict[str, Any] = {}
        self.tool_steps = 0
        self.turns: TurnRunner | None = None
        self.allowed_tools: dict[str, ToolDefinition] = {t.name: t for t in agent.tools}

    # ---- results --------------------------------------------------------------------------

    def result(
        self,
        status: ExecutionStatus,
        *,
        output: Any = None,
        context: dict[str, Any] | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> ExecutionResult:
        """Build the result from what happened so far."""
        turns = self.turns
        return ExecutionResult(
            status=status,
            execution_id=self.execution_id,
            output=output,
            context=context if context is not None else copy.deepcopy(self.context),
            mapped_input=copy.deepcopy(self.mapped_input),
            usage=turns.usage if turns else Usage(),
            cost=turns.cost if turns else Decimal(0),
            model_used=turns.model_used if turns else None,
            requested_model=self.requested_model,
            attempts=list(turns.attempts) if turns else [],
            error_code=error_code,
            error_message=error_message,
            unpriced_models=tuple(turns.unpriced) if turns else (),
            tool_steps=self.tool_steps,
        )

    async def _send_usage(self) -> None:
        usage = self.turns.usage if self.turns else Usage()
        await self.sink.send(
            {
                "type": "usage",
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "estimated": usage.estimated,
            }
        )

    async def _fail(
        self, code: str, message: str, *, status: ExecutionStatus = "failed"
    ) -> ExecutionResult:
        await self._send_usage()
        await self.sink.send({"type": "error", "code": code, "message": message})
        return self.result(status, error_code=code, error_message=message)

    # ---- the run --------------------------------------------------------------------------

    async def execute(self) -> ExecutionResult:
        """Run to a terminal result; re-raises CancelledError after emitting ``cancelled``."""
        await self.sink.send(
            {
                "type": "execution.started",
                "execution_id": self.execution_id,
                "agent_id": self.agent.id,
                "model": self.requested_model,
                "timestamp": now_iso(),
            }
        )
        total = self.config.timeout_seconds or self.agent.timeout_seconds
        try:
            async with asyncio.timeout(total):
                return await self._body()
        except TimeoutError:
            # _body turns every other exception into a result, so this is the deadline.
            return await self._fail(
                ErrorKind.TIMEOUT,
                f"the execution did not finish within its {total:g} s timeout",
                status="timeout",
            )
        except asyncio.CancelledError:
            await self._send_usage()
            await self.sink.send({"type": "cancelled"})
            raise

    async def _body(self) -> ExecutionResult:
        try:
            return await self._steps()
        except EngineError as exc:
            return await self._fail(exc.code, exc.message)
        except TurnFailed as exc:
            status: ExecutionStatus = "timeout" if exc.kind == ErrorKind.TIMEOUT else "failed"
            return await self._fail(exc.kind, exc.message, status=status)
        except Exception:
            # Never let an engine bug escape as an exception: the caller must get a result.
            logger.exception("agent execution %s failed unexpectedly", self.execution_id)
            return await self._fail("internal_error", "the execution failed unexpectedly")

    def _check_schemas(self) -> None:
        for tool in self.agent.tools:
            validate_schema({}, tool.parameters, what=f"tool {tool.name!r} parameters")
        if self.agent.output_schema is not None:
            validate_schema(None, self.agent.output_schema, what="output")

    def _targets(self, prompt_chars: int) -> tuple[ModelTarget, ...]:
        model = self.requested_model
        if is_virtual(model):
            primary = resolve_model(model, self.models, self.prices, prompt_chars=prompt_chars)
        else:
            primary = ModelTarget(provider=self.agent.provider, model=model)
        return (primary, *(t for t in self.agent.fallbacks if t != primary))

    async def _steps(self) -> ExecutionResult:
        agent, config = self.agent, self.config
        input_mapping = (
            config.input_mapping if config.input_mapping is not None else agent.input_mapping
        )
        output_mapping = (
            config.output_mapping if config.output_mapping is not None else agent.output_mapping
        )
        self.mapped_input = map_input(self.context, input_mapping, self.input)
        validate_input(self.mapped_input, agent.input_schema)
        # Refuse a bad output mapping before spending tokens on a reply we could not store.
        check_output_mapping(output_mapping)
        self._check_schemas()
        system = build_system_prompt(
            agent.system_prompt,
            agent.context_instructions,
            has_tools=bool(agent.tools),
            output_schema=agent.output_schema,
        )
        messages = self._first_messages(system)
        targets = self._targets(sum(len(m.content) for m in messages))
        if targets[0].model != self.requested_model:
            await self.sink.send(
                {
                    "type": "thinking",
                    "message": f"{self.requested_model} resolved to {targets[0].model}",
                }
            )
        self.turns = TurnRunner(
            agent=agent,
            config=config,
            targets=targets,
            tool_specs=(
                *(ToolSpec(t.name, t.description, dict(t.parameters)) for t in agent.tools),
                *self.input.client_tools,
            ),
            sink=self.sink,
            prices=self.prices,
            provider_factory=self.provider_factory or _default_provider_factory(),
            breakers=self.breakers,
            sleep=self.sleep,
            gate=self.gate,
        )
        client_tools = {t.name for t in self.input.client_tools}
        while True:
            turn = await self.turns.run(messages)
            if not turn.tool_calls:
                break
            if any(call.name in client_tools for call in turn.tool_calls):
                # The caller runs these: the calls are the answer (it sends the results back
                # in its next request's messages).
                return await self._complete(
                    turn, output_mapping, output=client_tool_output(turn), finish="tool_calls"
                )
            self.tool_steps += 1
            if self.tool_steps > agent.max_tool_steps:
                raise ToolStepLimit(
                    f"the model asked for tools more than max_tool_steps="
                    f"{agent.max_tool_steps} times"
                )
            messages.append(
                Message(role="assistant", content=turn.text, tool_calls=turn.tool_calls)
            )
            for call in turn.tool_calls:
                messages.append(await self._run_tool(call))

        return await self._complete(turn, output_mapping, output=turn.output)

    def _first_messages(self, system: str) -> list[Message]:
        agent = self.agent
        conversation = self.input.messages
        if not conversation:
            user = build_user_message(
                agent.user_template, self.mapped_input, self.context, self.input.message
            )
            return initial_messages(system, user)
        messages = [Message(role="system", content=system)] if system else []
        messages.extend(conversation[:-1])
        last = conversation[-1]
        if last.role == "user":
            # The caller's last word goes through the agent's template like a single message.
            last = Message(
                role="user",
                content=build_user_message(
                    agent.user_template, self.mapped_input, self.context, last.content
                ),
                name=last.name,
            )
        messages.append(last)
        return messages

    async def _complete(
        self,
        turn: Turn,
        output_mapping: Mapping[str, str],
        *,
        output: Any,
        finish: str | None = None,
    ) -> ExecutionResult:
        new_context = apply_output_mapping(self.context, output_mapping, output)
        await self._send_usage()
        result = self.result("completed", output=output, context=new_context)
        await self.sink.send(
            {
                "type": "complete",
                "output": output,
                "usage": {
                    "input_tokens": result.usage.input_tokens,
                    "output_tokens": result.usage.output_tokens,
                    "estimated": result.usage.estimated,
                },
                "cost": format(result.cost.normalize(), "f"),  # plain decimal, never "0E-8"
                "model": result.model_used or "",
                "finish_reason": finish or turn.finish_reason,
            }
        )
        return result

    async def _run_tool(self, call: ToolCall) -> Message:
        arguments: Any = call.arguments
        await self.sink.send(
            {
                "type": "tool_call",
                "tool_name": call.name,
                "tool_input": arguments if isinstance(arguments, dict) else {},
                "call_id": call.id,
            }
        )
        outcome = await self._tool_outcome(call)
        await self.sink.send(
            {
                "type": "tool_result",
                "tool_name": call.name,
                "tool_result": outcome.content,
                "call_id": call.id,
                "is_error": outcome.is_error,
            }
        )
        content = outcome.content
        if len(content) > MAX_TOOL_RESULT_CHARS:
            content = content[:MAX_TOOL_RESULT_CHARS] + "\n[truncated]"
        if outcome.is_error:
            content = f"ERROR: {content}"
        return Message(
            role="tool",
            content=wrap_untrusted(call.name, content),
            tool_call_id=call.id,
            name=call.name,
        )

    async def _tool_outcome(self, call: ToolCall) -> ToolOutcome:
        definition = self.allowed_tools.get(call.name)
        if definition is None:
            # The allow-list is the agent's; nothing the model (or a tool's output) says
            # can widen it.
            available = ", ".join(sorted(self.allowed_tools)) or "none"
            return ToolOutcome(
                f"tool {call.name!r} is not available to this agent (available: {available})",
                is_error=True,
            )
        if not isinstance(call.arguments, dict):
            return ToolOutcome("tool arguments must be a JSON object", is_error=True)
        try:
            problem = validate_schema(call.arguments, definition.parameters, what="tool")
        except PatternTimeout as exc:
            problem = str(exc)
        if problem is not None:
            return ToolOutcome(f"invalid arguments for {call.name!r}: {problem}", is_error=True)
        if self.tools is None:
            return ToolOutcome(f"no tool runner is configured for {call.name!r}", is_error=True)
        tool_context = ToolCallContext(
            definition=definition,
            call_id=call.id,
            execution_id=self.execution_id,
            agent_id=self.agent.id,
            context=copy.deepcopy(self.context),
        )
        try:
            return await self.tools.call(call.name, dict(call.arguments), context=tool_context)
        except Exception as exc:
            logger.exception("tool %r raised", call.name)
            return ToolOutcome(f"the tool failed ({type(exc).__name__})", is_error=True)
