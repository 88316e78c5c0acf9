"""Streams that break: retried before or after their text reached the client, and the ``reset``
event that withdraws text already streamed (the rule in agents.engine.events)."""

from __future__ import annotations

from agents.engine import DEFAULT_RETRY_ON, ExecutionInput, ModelTarget, RetryConfig, run_agent
from agents.engine.retry import is_retryable
from agents.providers.base import ErrorKind, ProviderError, TextDelta

from .fakes import SECONDARY, make_agent, make_context, reply
from .test_events_usage import kept_text

CUT = ProviderError(ErrorKind.NETWORK_ERROR, "connection reset mid-stream")
TRUNCATED = ProviderError(ErrorKind.MALFORMED_RESPONSE, "stream ended before [DONE]")


async def run(agent, factory, events, sleeps, breakers):
    return await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="x"),
        emit=events,
        provider_factory=factory,
        breakers=breakers,
        sleep=sleeps,
    )


def test_every_retryable_kind_can_be_named_and_broken_streams_are_retried_by_default() -> None:
    retry = RetryConfig()
    assert retry.retry_on_errors == DEFAULT_RETRY_ON
    assert is_retryable("malformed_response", retry)
    assert is_retryable("malformed_response", retry, text_streamed=True)
    assert not is_retryable("server_error", retry)  # opt-in, as in the original system
    only_network = RetryConfig(retry_on_errors=("network_error",))
    # Before any text reached the client, a broken stream is a failed connection ...
    assert is_retryable("malformed_response", only_network)
    # ... after, retrying means withdrawing text, which the agent must allow for that kind.
    assert not is_retryable("malformed_response", only_network, text_streamed=True)
    assert is_retryable("network_error", only_network, text_streamed=True)
    assert not is_retryable("malformed_response", RetryConfig(retry_on_errors=("timeout",)))


async def test_each_withdrawn_attempt_gets_its_own_reset_and_numbering_goes_on(
    factory, events, sleeps, breakers
) -> None:
    agent = make_agent(retry=RetryConfig(max_attempts=3, backoff_seconds=0.1))
    factory.add(
        agent.provider,
        [TextDelta("Hel"), TextDelta("lo wor"), CUT],
        [TextDelta("Hello"), TRUNCATED],
        reply("Hello world", pieces=3),
    )
    result = await run(agent, factory, events, sleeps, breakers)

    assert result.status == "completed"
    assert [c["sequence"] for c in events.of("chunk")] == [1, 2, 3, 4, 5, 6]
    resets = events.of("reset")
    assert [(r["reason"], r["discard_from_sequence"]) for r in resets] == [
        ("network_error", 1),
        ("malformed_response", 3),
    ]
    # Each reset comes before any text of the next attempt.
    assert events.types() == [
        "execution.started",
        *["chunk", "chunk", "reset", "thinking"],
        *["chunk", "reset", "thinking"],
        *["chunk", "chunk", "chunk"],
        "usage",
        "complete",
    ]
    assert kept_text(events.events) == result.output == "Hello world"
    assert [a.error_kind for a in result.attempts] == ["network_error", "malformed_response", None]


async def test_a_stream_broken_before_any_text_is_retried_like_a_network_error(
    factory, events, sleeps, breakers
) -> None:
    agent = make_agent(
        retry=RetryConfig(max_attempts=2, backoff_seconds=0.1, retry_on_errors=("network_error",))
    )
    factory.add(agent.provider, [TRUNCATED], reply("fine"))
    result = await run(agent, factory, events, sleeps, breakers)

    assert result.output == "fine"
    assert events.of("reset") == []  # nothing to withdraw
    assert [a.error_kind for a in result.attempts] == ["malformed_response", None]


async def test_after_text_only_an_allowed_kind_is_retried_and_the_text_is_still_withdrawn(
    factory, events, sleeps, breakers
) -> None:
    agent = make_agent(
        retry=RetryConfig(max_attempts=3, backoff_seconds=0.1, retry_on_errors=("network_error",)),
        fallbacks=(ModelTarget(provider=SECONDARY, model="claude-test"),),
    )
    primary = factory.add(agent.provider, [TextDelta("half an ans"), TRUNCATED], reply("unused"))
    factory.add(SECONDARY, reply("backup answer", model="claude-test", pieces=2))
    result = await run(agent, factory, events, sleeps, breakers)

    assert result.output == "backup answer"
    assert len(primary.requests) == 1  # malformed_response after text: not retried here
    assert sleeps.delays == []
    reset = events.of("reset")[0]
    assert reset["discard_from_sequence"] == 1
    types = events.types()
    assert types.index("reset") < types.index("thinking")  # before the fallback's text
    assert kept_text(events.events) == "backup answer"


async def test_a_reply_failing_the_output_schema_is_withdrawn_too(
    factory, events, sleeps, breakers
) -> None:
    agent = make_agent(
        output_schema={"type": "object", "required": ["a"]},
        retry=RetryConfig(max_attempts=2, backoff_seconds=0.1),
    )
    factory.add(agent.provider, reply('{"b": 1}', pieces=2), reply('{"a": 1}'))
    result = await run(agent, factory, events, sleeps, breakers)

    assert result.output == {"a": 1}
    assert [(r["reason"], r["discard_from_sequence"]) for r in events.of("reset")] == [
        ("invalid_output", 1)
    ]
    assert kept_text(events.events) == '{"a": 1}'


async def test_a_run_that_fails_after_streaming_still_withdraws_the_text(
    factory, events, sleeps, breakers
) -> None:
    agent = make_agent(retry=RetryConfig(max_attempts=1))
    factory.add(agent.provider, [TextDelta("partial"), CUT])
    result = await run(agent, factory, events, sleeps, breakers)

    assert result.status == "failed"
    assert events.types()[-3:] == ["reset", "usage", "error"]
    assert kept_text(events.events) == ""
