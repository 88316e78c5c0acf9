from __future__ import annotations

import random

import pytest

from agents.engine import (
    ExecutionInput,
    ModelTarget,
    RetryConfig,
    backoff_delay,
    run_agent,
)
from agents.engine.retry import is_retryable
from agents.providers.base import ErrorKind, ProviderError

from .fakes import SECONDARY, make_agent, make_context, reply

RETRY = RetryConfig(max_attempts=4, backoff_seconds=2.0, max_backoff_seconds=10.0)


def err(kind: ErrorKind, retry_after: float | None = None) -> list:
    return [ProviderError(kind, f"{kind.value} happened", retry_after=retry_after)]


def test_backoff_is_full_jitter_within_exponential_bounds() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (9, 10.0)]:
        draws = [backoff_delay(attempt, RETRY, uniform=rng.uniform) for _ in range(300)]
        assert all(0.0 <= d <= ceiling for d in draws)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(draws) < ceiling * 0.2
        assert max(draws) > ceiling * 0.8


def test_backoff_uses_the_upper_bound_the_rng_is_given() -> None:
    seen: list[tuple[float, float]] = []

    def uniform(a: float, b: float) -> float:
        seen.append((a, b))
        return b

    assert backoff_delay(3, RETRY, uniform=uniform) == 8.0
    assert seen == [(0.0, 8.0)]


def test_retry_after_wins_when_larger_and_gives_up_past_the_cap() -> None:
    assert backoff_delay(1, RETRY, retry_after=7.5, uniform=lambda a, b: b) == 7.5
    assert backoff_delay(3, RETRY, retry_after=1.0, uniform=lambda a, b: b) == 8.0
    assert backoff_delay(1, RETRY, retry_after=60.0) is None
    with pytest.raises(ValueError):
        backoff_delay(0, RETRY)


def test_only_listed_kinds_and_invalid_output_are_retryable() -> None:
    retry = RetryConfig()
    assert is_retryable("timeout", retry)
    assert is_retryable("invalid_output", retry)
    assert not is_retryable("server_error", retry)
    assert not is_retryable("authentication", retry)
    assert is_retryable("server_error", RetryConfig(retry_on_errors=("server_error",)))


async def test_retries_with_backoff_then_succeeds(factory, events, sleeps, breakers) -> None:
    agent = make_agent(retry=RETRY)
    factory.add(
        agent.provider,
        err(ErrorKind.RATE_LIMIT, retry_after=5.0),
        err(ErrorKind.NETWORK_ERROR),
        reply("finally"),
    )
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="x"),
        emit=events,
        provider_factory=factory,
        breakers=breakers,
        sleep=sleeps,
    )
    assert result.status == "completed"
    assert result.output == "finally"
    assert len(sleeps.delays) == 2
    assert sleeps.delays[0] >= 5.0  # Retry-After honoured
    assert 0.0 <= sleeps.delays[1] <= 4.0  # second backoff: 2 * 2**1
    assert [a.status for a in result.attempts] == ["failed", "failed", "succeeded"]
    assert [a.error_kind for a in result.attempts] == ["rate_limit", "network_error", None]
    assert result.retry_count == 2
    assert all(a.model == "gpt-test" and a.provider_kind == "openai" for a in result.attempts)
    thinking = [e["message"] for e in events.of("thinking")]
    assert len(thinking) == 2 and "retrying" in thinking[0]


async def test_permanent_error_is_not_retried_and_falls_back(factory, events, sleeps, breakers):
    fallback = ModelTarget(provider=SECONDARY, model="claude-test")
    agent = make_agent(retry=RETRY, fallbacks=(fallback,))
    factory.add(agent.provider, err(ErrorKind.AUTHENTICATION))
    backup = factory.add(SECONDARY, reply("from backup", model="claude-test"))
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="x"),
        emit=events,
        provider_factory=factory,
        breakers=breakers,
        sleep=sleeps,
    )
    assert result.status == "completed"
    assert result.model_used == "claude-test"
    assert result.requested_model == "gpt-test"
    assert sleeps.delays == []
    assert backup.requests[0].model == "claude-test"
    assert [(a.model, a.status, a.error_kind) for a in result.attempts] == [
        ("gpt-test", "failed", "authentication"),
        ("claude-test", "succeeded", None),
    ]
    assert "falling back to claude-test" in events.of("thinking")[0]["message"]


async def test_each_target_gets_its_own_attempts_in_order(factory, sleeps, breakers) -> None:
    second = ModelTarget(provider=SECONDARY, model="claude-test")
    third = ModelTarget(provider=SECONDARY, model="claude-small")
    agent = make_agent(
        retry=RetryConfig(max_attempts=2, backoff_seconds=1.0), fallbacks=(second, third)
    )
    factory.add(agent.provider, err(ErrorKind.TIMEOUT), err(ErrorKind.TIMEOUT))
    factory.add(
        SECONDARY,
        err(ErrorKind.NETWORK_ERROR),
        err(ErrorKind.NETWORK_ERROR),
        err(ErrorKind.RATE_LIMIT),
        err(ErrorKind.RATE_LIMIT),
    )
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="x"),
        provider_factory=factory,
        breakers=breakers,
        sleep=sleeps,
    )
    assert [a.model for a in result.attempts] == [
        "gpt-test",
        "gpt-test",
        "claude-test",
        "claude-test",
        "claude-small",
        "claude-small",
    ]
    assert result.status == "failed"
    assert result.error_code == "rate_limit"
    assert len(sleeps.delays) == 3  # between attempts on one target, never between targets


async def test_last_failure_timeout_gives_timeout_status(factory, sleeps, breakers) -> None:
    agent = make_agent(retry=RetryConfig(max_attempts=2, backoff_seconds=0.5))
    factory.add(agent.provider, err(ErrorKind.TIMEOUT), err(ErrorKind.TIMEOUT))
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="x"),
        provider_factory=factory,
        breakers=breakers,
        sleep=sleeps,
    )
    assert result.status == "timeout"
    assert result.error_code == "timeout"


async def test_huge_retry_after_moves_to_fallback_without_sleeping(factory, sleeps, breakers):
    agent = make_agent(
        retry=RETRY, fallbacks=(ModelTarget(provider=SECONDARY, model="claude-test"),)
    )
    factory.add(agent.provider, err(ErrorKind.RATE_LIMIT, retry_after=3600))
    factory.add(SECONDARY, reply("ok"))
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="x"),
        provider_factory=factory,
        breakers=breakers,
        sleep=sleeps,
    )
    assert result.status == "completed"
    assert sleeps.delays == []


async def test_provider_error_messages_do_not_leak_unexpected_exceptions(factory, breakers):
    agent = make_agent(retry=RetryConfig(max_attempts=1))
    factory.add(agent.provider, [KeyError("sk-canary")])
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="x"),
        provider_factory=factory,
        breakers=breakers,
    )
    assert result.status == "failed"
    assert result.error_code == "malformed_response"
    assert "sk-canary" not in (result.error_message or "")


async def test_stream_without_finish_is_a_failed_attempt(factory, breakers) -> None:
    from agents.providers.base import TextDelta

    agent = make_agent(retry=RetryConfig(max_attempts=1))
    factory.add(agent.provider, [TextDelta("cut off")])
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="x"),
        provider_factory=factory,
        breakers=breakers,
    )
    assert result.error_code == "malformed_response"
