from __future__ import annotations

from agents.engine import BreakerRegistry, CircuitBreaker, ExecutionInput, ModelTarget, run_agent
from agents.engine.breaker import default_breakers
from agents.providers.base import ErrorKind, ProviderConfig, ProviderError

from .fakes import PRIMARY, SECONDARY, make_agent, make_context, reply


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_then_half_open_probe_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=30, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure(ErrorKind.SERVER_ERROR)
    assert breaker.state == "closed"
    assert breaker.allow()
    breaker.record_failure(ErrorKind.TIMEOUT)
    assert breaker.state == "open"
    assert not breaker.allow()
    assert breaker.retry_in() == 30

    clock.now += 29.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.state == "half_open"
    assert breaker.allow()  # the single probe
    assert not breaker.allow()  # no second probe while the first is in flight
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow()


def test_failed_probe_reopens_for_a_new_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=10, clock=clock)
    breaker.record_failure(ErrorKind.NETWORK_ERROR)
    clock.now += 10
    assert breaker.allow()
    breaker.record_failure(ErrorKind.NETWORK_ERROR)
    assert breaker.state == "open"
    clock.now += 9
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()


def test_cancelled_probe_frees_the_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=1, clock=clock)
    breaker.record_failure(ErrorKind.TIMEOUT)
    clock.now += 1
    assert breaker.allow()
    breaker.release()
    assert breaker.allow()


def test_success_resets_the_consecutive_count_and_config_errors_do_not_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2)
    breaker.record_failure(ErrorKind.SERVER_ERROR)
    breaker.record_success()
    breaker.record_failure(ErrorKind.SERVER_ERROR)
    assert breaker.state == "closed"
    for _ in range(5):
        breaker.record_failure(ErrorKind.AUTHENTICATION)
        breaker.record_failure("invalid_output")
    assert breaker.state == "closed"


def test_registry_keys_by_kind_and_base_url_and_resets() -> None:
    registry = BreakerRegistry()
    same = ProviderConfig(kind="openai", base_url="https://PRIMARY.test/v1/", api_key="other")
    assert registry.get(PRIMARY) is registry.get(same)
    assert registry.get(PRIMARY) is not registry.get(SECONDARY)
    other_kind = ProviderConfig(kind="ollama", base_url=PRIMARY.base_url)
    assert registry.get(PRIMARY) is not registry.get(other_kind)
    first = registry.get(PRIMARY)
    registry.reset()
    assert registry.get(PRIMARY) is not first
    assert isinstance(default_breakers, BreakerRegistry)


async def test_engine_fails_fast_on_open_circuit_and_uses_fallback(factory, sleeps) -> None:
    clock = Clock()
    registry = BreakerRegistry(failure_threshold=2, cooldown_seconds=30, clock=clock)
    agent = make_agent(fallbacks=(ModelTarget(provider=SECONDARY, model="claude-test"),))
    failing = factory.add(
        PRIMARY,
        [ProviderError(ErrorKind.SERVER_ERROR, "boom")],
        [ProviderError(ErrorKind.SERVER_ERROR, "boom")],
        reply("primary back"),
    )
    factory.add(SECONDARY, reply("b1"), reply("b2"))

    async def run() -> object:
        return await run_agent(
            agent=agent,
            context=make_context(),
            input=ExecutionInput(message="x"),
            provider_factory=factory,
            breakers=registry,
            sleep=sleeps,
        )

    first = await run()  # server_error is not retried by default: one failure each run
    assert first.output == "b1"
    second = await run()
    assert second.output == "b2"
    assert registry.get(PRIMARY).state == "open"
    assert len(failing.requests) == 2

    third = await run()  # primary skipped without a call; backup has no script left
    assert len(failing.requests) == 2
    assert third.status == "failed"
    assert third.attempts[0].status == "skipped"
    assert third.attempts[0].error_kind == "circuit_open"

    clock.now += 30  # half-open: one probe reaches the primary and closes the circuit
    fourth = await run()
    assert fourth.output == "primary back"
    assert registry.get(PRIMARY).state == "closed"


async def test_open_circuit_without_fallback_is_a_circuit_open_failure(factory) -> None:
    registry = BreakerRegistry(failure_threshold=1)
    registry.get(PRIMARY).record_failure(ErrorKind.NETWORK_ERROR)
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
