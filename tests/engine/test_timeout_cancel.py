from __future__ import annotations

import asyncio
import time

import pytest

from agents.engine import CallConfig, ExecutionInput, RetryConfig, run_agent, start_agent
from agents.providers.base import TextDelta

from .fakes import Delay, make_agent, make_context, reply

HANG = [TextDelta("partial "), Delay(3600)]


async def test_total_timeout_closes_the_stream_at_once(factory, events, breakers) -> None:
    provider = factory.add(make_agent().provider, HANG)
    started = time.monotonic()
    result = await run_agent(
        agent=make_agent(),
        context=make_context(),
        input=ExecutionInput(message="x"),
        config=CallConfig(timeout_seconds=0.05),
        emit=events,
        provider_factory=factory,
        breakers=breakers,
    )
    assert time.monotonic() - started < 1.0
    assert result.status == "timeout"
    assert result.error_code == "timeout"
    assert provider.streams[0].closed
    assert events.types() == ["execution.started", "chunk", "usage", "error"]
    assert events.of("error")[0]["code"] == "timeout"


async def test_attempt_timeout_is_retried_and_closes_each_stream(factory, sleeps, breakers):
    agent = make_agent(retry=RetryConfig(max_attempts=2, backoff_seconds=0.0))
    provider = factory.add(agent.provider, HANG, reply("second try"))
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="x"),
        config=CallConfig(attempt_timeout_seconds=0.05),
        provider_factory=factory,
        breakers=breakers,
        sleep=sleeps,
    )
    assert result.status == "completed"
    assert result.output == "second try"
    assert [a.error_kind for a in result.attempts] == ["timeout", None]
    assert result.attempts[0].latency_ms >= 40
    assert all(stream.closed for stream in provider.streams)


async def test_attempt_timeouts_everywhere_end_as_timeout(factory, sleeps, breakers) -> None:
    agent = make_agent(retry=RetryConfig(max_attempts=2, backoff_seconds=0.0))
    provider = factory.add(agent.provider, HANG, HANG)
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="x"),
        config=CallConfig(attempt_timeout_seconds=0.02),
        provider_factory=factory,
        breakers=breakers,
        sleep=sleeps,
    )
    assert result.status == "timeout"
    assert result.error_code == "timeout"
    assert all(stream.closed for stream in provider.streams)


async def test_cancel_closes_stream_emits_cancelled_and_reraises(factory, events, breakers):
    provider = factory.add(make_agent().provider, HANG)
    task = asyncio.create_task(
        run_agent(
            agent=make_agent(),
            context=make_context(),
            input=ExecutionInput(message="x"),
            emit=events,
            provider_factory=factory,
            breakers=breakers,
        )
    )
    while not events.of("chunk"):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert provider.streams[0].closed
    assert events.types()[-1] == "cancelled"
    assert "complete" not in events.types() and "error" not in events.types()


async def test_start_agent_cancel_returns_a_cancelled_result(factory, events, breakers) -> None:
    provider = factory.add(make_agent().provider, HANG)
    run = start_agent(
        agent=make_agent(),
        context=make_context(),
        input=ExecutionInput(message="x"),
        emit=events,
        provider_factory=factory,
        breakers=breakers,
    )
    assert run.execution_id == "exec456"
    while not events.of("chunk"):
        await asyncio.sleep(0)
    run.cancel()
    result = await run.result()
    assert result.status == "cancelled"
    assert result.error_code == "cancelled"
    assert [a.status for a in result.attempts] == ["cancelled"]
    assert provider.streams[0].closed
    assert run.done()
    assert events.types()[-1] == "cancelled"
    # The breaker's probe slot and counters are untouched by a cancel.
    assert breakers.get(make_agent().provider).state == "closed"


async def test_cancelling_the_waiter_cancels_the_run(factory, breakers) -> None:
    provider = factory.add(make_agent().provider, HANG)
    run = start_agent(
        agent=make_agent(),
        context=make_context(),
        input=ExecutionInput(message="x"),
        provider_factory=factory,
        breakers=breakers,
    )
    waiter = asyncio.create_task(run.result())
    while not provider.streams:
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.sleep(0)
    assert run.done()
    assert provider.streams[0].closed


async def test_start_agent_returns_normal_results(factory, breakers) -> None:
    factory.add(make_agent().provider, reply("fine"))
    run = start_agent(
        agent=make_agent(),
        context=make_context(),
        input=ExecutionInput(message="x"),
        provider_factory=factory,
        breakers=breakers,
    )
    result = await run.result()
    assert result.status == "completed"
    assert result.output == "fine"
