"""Circuit breakers: rate-based tripping, half-open probes, per-credential keys, and how the
engine uses them (an open breaker costs no attempt when a fallback exists)."""

from __future__ import annotations

import random

import pytest

from agents.engine import (
    BreakerPolicy,
    BreakerRegistry,
    CircuitBreaker,
    ExecutionInput,
    ModelTarget,
    RetryConfig,
    run_agent,
)
from agents.engine.breaker import default_breakers, failure_rate_lower_bound
from agents.providers.base import ErrorKind, ProviderConfig, ProviderError

from .fakes import PRIMARY, SECONDARY, make_agent, make_context, reply


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.policy.minimum_calls):
        breaker.record_failure(ErrorKind.SERVER_ERROR)
    assert breaker.state == "open"


def test_a_provider_that_is_down_opens_after_the_minimum_number_of_calls() -> None:
    breaker = CircuitBreaker(BreakerPolicy(minimum_calls=10))
    for _ in range(9):
        assert breaker.allow()
        breaker.record_failure(ErrorKind.NETWORK_ERROR)
    assert breaker.state == "closed"  # nine calls are not enough evidence
    breaker.record_failure(ErrorKind.TIMEOUT)
    assert breaker.state == "open"
    assert not breaker.allow()


def test_opens_on_the_failure_rate_even_without_failures_in_a_row() -> None:
    # Four failures, one success, over and over: never five in a row, but 80 % failing.
    breaker = CircuitBreaker()
    for _ in range(6):
        for _ in range(4):
            breaker.record_failure(ErrorKind.SERVER_ERROR)
        breaker.record_success()
        if breaker.state == "open":
            break
    assert breaker.state == "open"


def test_a_degraded_provider_that_retries_get_through_stays_closed() -> None:
    # 30 % of calls failing: six attempts get 99.9 % of runs through, so opening the breaker
    # would do more harm than good. With the plain observed rate over a 20-call window this
    # trips almost every time (see agents.engine.breaker); the confidence bound does not.
    rng = random.Random(11)
    opened = 0
    for _ in range(50):
        breaker = CircuitBreaker()
        for _ in range(400):
            if rng.random() < 0.3:
                breaker.record_failure(ErrorKind.SERVER_ERROR)
            else:
                breaker.record_success()
        opened += breaker.state == "open"
    assert opened == 0

    plain = BreakerPolicy(window_calls=20, minimum_calls=10, confidence_z=0)
    trips = 0
    for _ in range(50):
        breaker = CircuitBreaker(plain)
        for _ in range(400):
            if rng.random() < 0.3:
                breaker.record_failure(ErrorKind.SERVER_ERROR)
            else:
                breaker.record_success()
            if breaker.state == "open":
                trips += 1
                break
    assert trips > 25


def test_outcomes_leave_the_window_by_age_and_by_count() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(window_seconds=60, window_calls=20), clock=clock)
    for _ in range(9):
        breaker.record_failure(ErrorKind.SERVER_ERROR)
    clock.now += 61  # those nine are forgotten
    breaker.record_failure(ErrorKind.SERVER_ERROR)
    assert breaker.state == "closed"

    breaker = CircuitBreaker(BreakerPolicy(window_calls=20, minimum_calls=10), clock=clock)
    for _ in range(8):
        breaker.record_failure(ErrorKind.SERVER_ERROR)
    for _ in range(20):  # pushes the failures out of the last-20-calls window
        breaker.record_success()
    for _ in range(6):
        breaker.record_failure(ErrorKind.SERVER_ERROR)
    assert breaker.state == "closed"  # 6 of the last 20 failed, not 14 of 34


@pytest.mark.parametrize(
    "kind",
    [ErrorKind.RATE_LIMIT, ErrorKind.AUTHENTICATION, ErrorKind.INVALID_REQUEST, "invalid_output"],
)
def test_quota_and_configuration_errors_never_count(kind) -> None:
    breaker = CircuitBreaker()
    for _ in range(100):
        assert breaker.allow()
        breaker.record_failure(kind)
    assert breaker.state == "closed"
    # ... nor dilute the rate: ten real failures still open it.
    for _ in range(10):
        breaker.record_failure(ErrorKind.SERVER_ERROR)
    assert breaker.state == "open"


def test_half_open_lets_a_few_probes_through_and_closes_when_they_succeed() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(cooldown_seconds=30, half_open_probes=3), clock=clock)
    open_breaker(breaker)
    assert breaker.retry_in() == 30
    clock.now += 29.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.state == "half_open"
    assert [breaker.allow() for _ in range(4)] == [True, True, True, False]
    breaker.record_success()
    breaker.record_success()
    assert breaker.state == "half_open"
    assert not breaker.allow()  # the third probe is still in flight
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow()
    # Closed with an empty window: one failure is not a rate.
    breaker.record_failure(ErrorKind.SERVER_ERROR)
    assert breaker.state == "closed"


def test_a_failed_probe_reopens_for_a_new_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(cooldown_seconds=10), clock=clock)
    open_breaker(breaker)
    clock.now += 10
    assert breaker.allow() and breaker.allow()
    breaker.record_success()
    breaker.record_failure(ErrorKind.NETWORK_ERROR)
    assert breaker.state == "open"
    clock.now += 9
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()


@pytest.mark.parametrize("ending", ["release", ErrorKind.RATE_LIMIT])
def test_a_probe_without_a_verdict_frees_its_slot(ending) -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(cooldown_seconds=1, half_open_probes=1), clock=clock)
    open_breaker(breaker)
    clock.now += 1
    assert breaker.allow()
    assert not breaker.allow()
    if ending == "release":
        breaker.release()  # cancelled
    else:
        breaker.record_failure(ending)
    assert breaker.state == "half_open"
    assert breaker.allow()


def test_wilson_bound_and_policy_validation() -> None:
    assert failure_rate_lower_bound(0, 0, 1.96) == 0.0
    assert failure_rate_lower_bound(5, 10, 0) == 0.5
    assert 0.72 < failure_rate_lower_bound(10, 10, 1.96) < 0.73
    assert failure_rate_lower_bound(30, 100, 1.96) < 0.3
    for bad in (
        {"minimum_calls": 0},
        {"minimum_calls": 200},
        {"failure_rate_threshold": 0},
        {"half_open_probes": 0},
        {"window_seconds": 0},
        {"confidence_z": -1},
    ):
        with pytest.raises(ValueError):
            BreakerPolicy(**bad)


def test_registry_keys_by_credential_then_by_kind_and_base_url() -> None:
    registry = BreakerRegistry()
    alpha = ProviderConfig(kind="openai", base_url=PRIMARY.base_url, breaker_key="alpha:cred_1")
    bravo = ProviderConfig(kind="openai", base_url=PRIMARY.base_url, breaker_key="bravo:cred_9")
    assert registry.get(alpha) is not registry.get(bravo)
    assert registry.get(alpha) is not registry.get(PRIMARY)
    moved = ProviderConfig(kind="openai", base_url="https://other.test", breaker_key="alpha:cred_1")
    assert registry.get(moved) is registry.get(alpha)

    same = ProviderConfig(kind="openai", base_url="https://PRIMARY.test/v1/", api_key="other")
    assert registry.get(PRIMARY) is registry.get(same)
    assert registry.get(PRIMARY) is not registry.get(SECONDARY)
    assert registry.get(PRIMARY) is not registry.get(
        ProviderConfig(kind="ollama", base_url=PRIMARY.base_url)
    )
    first = registry.get(PRIMARY)
    registry.reset()
    assert registry.get(PRIMARY) is not first
    assert isinstance(default_breakers, BreakerRegistry)


def test_registry_forgets_the_least_recently_used_breaker_past_its_cap() -> None:
    registry = BreakerRegistry(max_breakers=2)
    configs = [
        ProviderConfig(kind="openai", base_url=PRIMARY.base_url, breaker_key=f"t:{i}")
        for i in range(3)
    ]
    first = registry.get(configs[0])
    registry.get(configs[1])
    assert registry.get(configs[0]) is first  # used again: now the most recent
    registry.get(configs[2])
    assert registry.get(configs[0]) is first
    assert len(registry._breakers) == 2


def test_registry_applies_its_policy_to_every_breaker() -> None:
    policy = BreakerPolicy(minimum_calls=2, cooldown_seconds=5)
    registry = BreakerRegistry(policy)
    assert registry.get(PRIMARY).policy is policy


# ---- the engine and its breakers --------------------------------------------------------

FALLBACK = ModelTarget(provider=SECONDARY, model="claude-test")


async def run(factory, registry, sleeps, agent=None) -> object:
    return await run_agent(
        agent=agent or make_agent(fallbacks=(FALLBACK,)),
        context=make_context(),
        input=ExecutionInput(message="x"),
        provider_factory=factory,
        breakers=registry,
        sleep=sleeps,
    )


async def test_open_breaker_costs_no_attempt_when_a_fallback_exists(factory, sleeps) -> None:
    clock = Clock()
    registry = BreakerRegistry(clock=clock)
    open_breaker(registry.get(PRIMARY))
    primary = factory.add(PRIMARY, reply("primary back"))
    factory.add(SECONDARY, reply("b1", model="claude-test"), reply("b2", model="claude-test"))

    result = await run(factory, registry, sleeps)

    assert result.output == "b1"
    assert primary.requests == []
    assert factory.calls == [SECONDARY.base_url]  # the primary's adapter is not even built
    assert sleeps.delays == []
    assert [(a.model, a.status, a.error_kind) for a in result.attempts] == [
        ("gpt-test", "skipped", "circuit_open"),
        ("claude-test", "succeeded", None),
    ]

    # Half-open: a probe goes to the primary again, and its success counts.
    clock.now += registry.policy.cooldown_seconds
    result = await run(factory, registry, sleeps)
    assert result.output == "primary back"
    assert len(primary.requests) == 1


async def test_breaker_opening_during_retries_moves_on_without_sleeping(factory, sleeps) -> None:
    registry = BreakerRegistry(BreakerPolicy(minimum_calls=2, confidence_z=0))
    agent = make_agent(
        fallbacks=(FALLBACK,),
        retry=RetryConfig(max_attempts=5, backoff_seconds=1.0, retry_on_errors=("server_error",)),
    )
    primary = factory.add(
        PRIMARY,
        [ProviderError(ErrorKind.SERVER_ERROR, "boom")],
        [ProviderError(ErrorKind.SERVER_ERROR, "boom")],
        reply("never reached"),
    )
    factory.add(SECONDARY, reply("backup", model="claude-test"))

    result = await run(factory, registry, sleeps, agent)

    assert result.output == "backup"
    assert len(primary.requests) == 2  # the second failure opened the breaker
    assert len(sleeps.delays) == 1  # only between the first and second attempt
    assert registry.get(PRIMARY).state == "open"


async def test_open_breaker_without_fallback_is_a_circuit_open_failure(factory) -> None:
    registry = BreakerRegistry()
    open_breaker(registry.get(PRIMARY))
    provider = factory.add(PRIMARY, reply())
    result = await run_agent(
        agent=make_agent(),
        context=make_context(),
        input=ExecutionInput(message="x"),
        provider_factory=factory,
        breakers=registry,
    )
    assert result.status == "failed"
    assert result.error_code == "circuit_open"
    assert "circuit open" in (result.error_message or "")
    assert provider.requests == []


async def test_rate_limited_runs_are_retried_and_never_open_the_breaker(factory, sleeps) -> None:
    registry = BreakerRegistry(BreakerPolicy(minimum_calls=2, confidence_z=0))
    agent = make_agent(retry=RetryConfig(max_attempts=3, backoff_seconds=0.1))
    limited = [ProviderError(ErrorKind.RATE_LIMIT, "slow down", retry_after=2.0)]
    factory.add(PRIMARY, *([limited, limited, reply("ok")] * 4))

    for _ in range(4):
        result = await run(factory, registry, sleeps, agent)
        assert result.output == "ok"

    assert registry.get(PRIMARY).state == "closed"
    assert sleeps.delays == [2.0] * 8  # Retry-After honoured every time
