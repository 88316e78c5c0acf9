"""One model turn: attempts across retries, fallback targets and circuit breakers.

A *turn* is one request to the model with the conversation so far; a tool-using execution has
several. Each turn walks the targets in order (the primary, then the agent's fallbacks), giving
each target its own sequence of up to ``retry.max_attempts`` attempts:

- a retryable failure (a kind in ``retry_on_errors``, or ``invalid_output``; see
  :func:`~agents.engine.retry.is_retryable` for streams that broke) sleeps with backoff, or
  the provider's Retry-After, and tries the same target again;
- a permanent failure, exhausted attempts, a Retry-After above the backoff cap, or an open
  circuit breaker moves on to the next target at once: no attempt is spent, and no backoff
  slept, on a target whose breaker is open while another target remains;
- an attempt that fails after streaming text is followed by a ``reset`` event withdrawing that
  text, before anything else is streamed (see :mod:`agents.engine.events`);
- once a target has answered, later turns of the same execution start with it (the
  conversation stays on one model unless that model fails).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from agents.engine.breaker import BreakerRegistry, CircuitBreaker
from agents.engine.errors import INVALID_OUTPUT, UncheckableOutput
from agents.engine.events import EventSink
from agents.engine.mapping import parse_structured_output
from agents.engine.pricing import PriceTable, add_usage
from agents.engine.retry import backoff_delay, is_retryable
from agents.engine.types import (
    AgentSnapshot,
    AttemptRecord,
    AttemptStatus,
    CallConfig,
    ModelTarget,
    SpendGate,
)
from agents.providers.base import (
    ChatRequest,
    ErrorKind,
    Finished,
    Message,
    Provider,
    ProviderConfig,
    ProviderError,
    TextDelta,
    ToolCall,
    ToolCallsReady,
    ToolSpec,
    Usage,
    UsageReport,
)

logger = logging.getLogger(__name__)

ProviderFactory = Callable[[ProviderConfig], Provider]
Sleep = Callable[[float], Coroutine[Any, Any, None]]


class TurnFailed(Exception):
    """Every target failed for this turn; carries the last failure."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class _AttemptFailed(Exception):
    def __init__(
        self,
        kind: str,
        message: str,
        retry_after: float | None = None,
        *,
        streamed_from: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after
        # Sequence of the attempt's first chunk event, None when it streamed no text.
        self.streamed_from = streamed_from


@dataclass(frozen=True, slots=True)
class Turn:
    """A successful model reply: text, requested tool calls, and the final output value."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    output: Any
    model: str
    # What the provider said ended the reply ("stop", "length", "tool_calls", ...).
    finish_reason: str = "stop"


def _estimate_usage(messages: list[Message], text: str, calls: tuple[ToolCall, ...]) -> Usage:
    # About four characters per token: rough, but flagged as estimated all the way to billing.
    prompt = sum(
        len(m.content) + sum(len(str(c.arguments)) for c in m.tool_calls) for m in messages
    )
    reply = len(text) + sum(len(c.name) + len(str(c.arguments)) for c in calls)
    return Usage(input_tokens=(prompt + 3) // 4, output_tokens=(reply + 3) // 4, estimated=True)


def prompt_bytes(request: ChatRequest) -> int:
    """Every byte a call sends the model (each is at most one token: an upper bound)."""
    total = sum(
        len(m.content.encode())
        + sum(len(json.dumps(c.arguments, default=str)) for c in m.tool_calls)
        for m in request.messages
    )
    total += sum(
        len(t.name) + len(t.description.encode()) + len(json.dumps(t.parameters, default=str))
        for t in request.tools
    )
    if request.json_schema is not None:
        total += len(json.dumps(request.json_schema, default=str))
    return total


class TurnRunner:
    """Runs turns for one execution and accumulates attempts, usage and cost."""

    def __init__(
        self,
        *,
        agent: AgentSnapshot,
        config: CallConfig,
        targets: tuple[ModelTarget, ...],
        tool_specs: tuple[ToolSpec, ...],
        sink: EventSink,
        prices: PriceTable,
        provider_factory: ProviderFactory,
        breakers: BreakerRegistry,
        sleep: Sleep,
        gate: SpendGate | None = None,
    ) -> None:
        self.agent = agent
        self.config = config
        self.targets = targets
        self.tool_specs = tool_specs
        self.sink = sink
        self.prices = prices
        self.provider_factory = provider_factory
        self.breakers = breakers
        self.sleep = sleep
        self.gate = gate
        self.retry = config.retry or agent.retry
        self.attempts: list[AttemptRecord] = []
        self.usage = Usage()
        self.cost = Decimal(0)
        self.unpriced: list[str] = []
        self.model_used: str | None = None
        self._start_index = 0

    def _request(self, target: ModelTarget, messages: list[Message]) -> ChatRequest:
        agent, config = self.agent, self.config

        def pick(override: Any, default: Any) -> Any:
            return default if override is None else override

        schema = agent.output_schema
        return ChatRequest(
            model=target.model,
            messages=tuple(messages),
            temperature=pick(config.temperature, agent.temperature),
            max_tokens=pick(config.max_tokens, agent.max_tokens),
            top_p=pick(config.top_p, agent.top_p),
            frequency_penalty=pick(config.frequency_penalty, agent.frequency_penalty),
            presence_penalty=pick(config.presence_penalty, agent.presence_penalty),
            stop=tuple(pick(config.stop_sequences, agent.stop_sequences)),
            tools=self.tool_specs,
            json_mode=schema is not None,
            json_schema=dict(schema) if schema is not None else None,
        )

    async def run(self, messages: list[Message]) -> Turn:
        """One turn over targets and attempts; raises :class:`TurnFailed` when all fail."""
        last = _AttemptFailed(ErrorKind.CIRCUIT_OPEN, "no model target is available")
        max_attempts = max(1, self.retry.max_attempts)
        order = list(range(self._start_index, len(self.targets)))
        for position, index in enumerate(order):
            target = self.targets[index]
            breaker = self.breakers.get(target.provider)
            for attempt_no in range(1, max_attempts + 1):
                if self.gate is not None:
                    # Before the breaker: a refused call must not hold a half-open probe.
                    request = self._request(target, messages)
                    await self.gate.before_call(
                        model=target.model,
                        prompt_bytes=prompt_bytes(request),
                        max_output=request.max_tokens,
                        spent=self.usage,
                        spent_cost=self.cost,
                    )
                if not breaker.allow():
                    last = _AttemptFailed(
                        ErrorKind.CIRCUIT_OPEN,
                        f"{target.provider.kind} is failing; skipped for "
                        f"{breaker.retry_in():.0f} s (circuit open)",
                    )
                    self._record(target, "skipped", last.kind, 0.0, Usage(), last.message)
                    break
                try:
                    turn = await self._attempt(target, messages, breaker)
                except _AttemptFailed as failure:
                    last = failure
                    streamed = failure.streamed_from is not None
                    if failure.streamed_from is not None:
                        await self._withdraw(target, failure.kind, failure.streamed_from)
                    if attempt_no == max_attempts or not is_retryable(
                        failure.kind, self.retry, text_streamed=streamed
                    ):
                        break
                    if breaker.state == "open":
                        # This failure opened the breaker: waiting out a backoff only to be
                        # refused would delay the fallback (or the failure) for nothing.
                        break
                    delay = backoff_delay(attempt_no, self.retry, retry_after=failure.retry_after)
                    if delay is None:
                        break
                    await self.sink.send(
                        {
                            "type": "thinking",
                            "message": f"{target.model} failed ({failure.kind}); retrying in "
                            f"{delay:.1f} s (attempt {attempt_no + 1} of {max_attempts})",
                        }
                    )
                    await self.sleep(delay)
                    continue
                self._start_index = index
                return turn
            if position + 1 < len(order):
                await self.sink.send(
                    {
                        "type": "thinking",
                        "message": f"{target.model} failed ({last.kind}); falling back to "
                        f"{self.targets[order[position + 1]].model}",
                    }
                )
        raise TurnFailed(last.kind, last.message)

    async def _withdraw(self, target: ModelTarget, kind: str, first_sequence: int) -> None:
        await self.sink.send(
            {
                "type": "reset",
                "reason": str(kind),
                "message": f"the reply of {target.model} failed part-way ({kind}); the text "
                f"streamed from chunk {first_sequence} on is withdrawn",
                "discard_from_sequence": first_sequence,
            }
        )

    def _record(
        self,
        target: ModelTarget,
        status: AttemptStatus,
        error_kind: str | None,
        started: float,
        usage: Usage,
        message: str | None = None,
        started_at: datetime | None = None,
        model: str | None = None,
    ) -> None:
        latency = int((time.monotonic() - started) * 1000) if started else 0
        self.attempts.append(
            AttemptRecord(
                model=target.model,
                provider_kind=target.provider.kind,
                status=status,
                error_kind=str(error_kind) if error_kind is not None else None,
                latency_ms=latency,
                usage=usage,
                started_at=started_at or datetime.now(UTC),
                error_message=message,
            )
        )
        if usage.total_tokens:
            self.usage = add_usage(self.usage, usage)
            cost = self.prices.cost(model or target.model, usage)
            if cost is None and model and model != target.model:
                cost = self.prices.cost(target.model, usage)
            if cost is None:
                if target.model not in self.unpriced:
                    self.unpriced.append(target.model)
            else:
                self.cost += cost

    async def _attempt(
        self, target: ModelTarget, messages: list[Message], breaker: CircuitBreaker
    ) -> Turn:
        started_at = datetime.now(UTC)
        started = time.monotonic()
        first_sequence: int | None = None
        text: list[str] = []
        calls: list[ToolCall] = []
        usage: Usage | None = None
        finished: Finished | None = None
        attempt_timeout = self.config.attempt_timeout_seconds
        try:
            try:
                provider = self.provider_factory(target.provider)
                async with asyncio.timeout(attempt_timeout):
                    stream = provider.stream(self._request(target, messages))
                    try:
                        async for event in stream:
                            if isinstance(event, TextDelta):
                                text.append(event.text)
                                if first_sequence is None:
                                    first_sequence = self.sink.chunks_sent + 1
                                await self.sink.chunk(event.text)
                            elif isinstance(event, ToolCallsReady):
                                calls.extend(event.calls)
                            elif isinstance(event, UsageReport):
                                usage = event.usage
                            elif isinstance(event, Finished):
                                finished = event
                    finally:
                        # Closing at once frees the upstream connection on every exit path,
                        # timeout and cancellation included.
                        aclose = getattr(stream, "aclose", None)
                        if aclose is not None:
                            await aclose()
                if finished is None:
                    raise ProviderError(
                        ErrorKind.MALFORMED_RESPONSE, "the stream ended without a finish event"
                    )
            except TimeoutError:
                raise _AttemptFailed(
                    ErrorKind.TIMEOUT, f"no complete reply within {attempt_timeout:g} s"
                ) from None
            except ProviderError as exc:
                raise _AttemptFailed(exc.kind, exc.message, exc.retry_after) from None
            except Exception as exc:
                # Adapters promise ProviderError only; anything else is an adapter bug.
                logger.exception("provider %s raised unexpectedly", target.provider.kind)
                raise _AttemptFailed(
                    ErrorKind.MALFORMED_RESPONSE, f"the provider failed ({type(exc).__name__})"
                ) from None
        except _AttemptFailed as failure:
            failure.streamed_from = first_sequence
            breaker.record_failure(failure.kind)
            self._record(
                target,
                "failed",
                failure.kind,
                started,
                usage or Usage(),
                failure.message,
                started_at,
            )
            raise
        except asyncio.CancelledError:
            breaker.release()
            self._record(target, "cancelled", None, started, usage or Usage(), None, started_at)
            raise

        breaker.record_success()
        reply = "".join(text)
        if usage is None:
            usage = _estimate_usage(messages, reply, tuple(calls))
        output: Any = reply
        if not calls and self.agent.output_schema is not None:
            try:
                output, problem = parse_structured_output(reply, self.agent.output_schema)
            except UncheckableOutput as exc:
                # The run fails with this error; the attempt (and its tokens) still counts.
                self._record(target, "failed", exc.code, started, usage, exc.message, started_at)
                if first_sequence is not None:
                    await self._withdraw(target, exc.code, first_sequence)
                raise
            if problem is not None:
                self._record(
                    target,
                    "failed",
                    INVALID_OUTPUT,
                    started,
                    usage,
                    problem,
                    started_at,
                    finished.model,
                )
                raise _AttemptFailed(INVALID_OUTPUT, problem, streamed_from=first_sequence)
        self._record(target, "succeeded", None, started, usage, None, started_at, finished.model)
        self.model_used = finished.model or target.model
        return Turn(
            text=reply,
            tool_calls=tuple(calls),
            output=output,
            model=self.model_used,
            finish_reason=finished.finish_reason or "stop",
        )
