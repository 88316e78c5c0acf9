from __future__ import annotations

import json

from agents.engine import ExecutionInput, RetryConfig, run_agent

from .fakes import make_agent, make_context, reply

SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["bug", "feature"]}, "confidence": {"type": "number"}},
    "required": ["label", "confidence"],
    "additionalProperties": False,
}


def structured_agent(**overrides):
    return make_agent(
        output_schema=SCHEMA,
        output_mapping={"custom_context.label": "label"},
        **overrides,
    )


async def test_valid_json_is_parsed_validated_and_mapped(factory, events, sleeps, breakers) -> None:
    value = {"label": "bug", "confidence": 0.9}
    provider = factory.add(structured_agent().provider, reply(json.dumps(value), pieces=3))
    result = await run_agent(
        agent=structured_agent(),
        context=make_context(),
        input=ExecutionInput(message="crash on save"),
        emit=events,
        provider_factory=factory,
        breakers=breakers,
        sleep=sleeps,
    )
    assert result.status == "completed"
    assert result.output == value
    assert result.context["custom_context"]["label"] == "bug"
    request = provider.requests[0]
    assert request.json_mode is True
    assert request.json_schema == SCHEMA
    # The schema is also spelled out for models without native structured output.
    assert '"label"' in request.messages[0].content
    assert events.of("complete")[0]["output"] == value


async def test_fenced_json_is_accepted(factory, breakers) -> None:
    fenced = '```json\n{"label": "feature", "confidence": 1}\n```'
    factory.add(structured_agent().provider, reply(fenced))
    result = await run_agent(
        agent=structured_agent(),
        context=make_context(),
        input=ExecutionInput(message="x"),
        provider_factory=factory,
        breakers=breakers,
    )
    assert result.output == {"label": "feature", "confidence": 1}


async def test_invalid_output_is_retried_then_succeeds(factory, events, sleeps, breakers) -> None:
    factory.add(
        structured_agent().provider,
        reply("not json at all"),
        reply('{"label": "question", "confidence": 0.2}'),
        reply('{"label": "bug", "confidence": 0.5}'),
    )
    result = await run_agent(
        agent=structured_agent(),
        context=make_context(),
        input=ExecutionInput(message="x"),
        emit=events,
        provider_factory=factory,
        breakers=breakers,
        sleep=sleeps,
    )
    assert result.status == "completed"
    assert result.output == {"label": "bug", "confidence": 0.5}
    assert [(a.status, a.error_kind) for a in result.attempts] == [
        ("failed", "invalid_output"),
        ("failed", "invalid_output"),
        ("succeeded", None),
    ]
    assert "not valid JSON" in (result.attempts[0].error_message or "")
    assert "label" in (result.attempts[1].error_message or "")
    assert len(sleeps.delays) == 2
    # Tokens of the rejected replies were still spent and are counted.
    assert result.usage.input_tokens == 30


async def test_invalid_output_everywhere_fails_clearly(factory, events, sleeps, breakers) -> None:
    agent = structured_agent(retry=RetryConfig(max_attempts=2, backoff_seconds=1.0))
    factory.add(agent.provider, reply('{"label": 1}'), reply('{"label": 2}'))
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="x"),
        emit=events,
        provider_factory=factory,
        breakers=breakers,
        sleep=sleeps,
    )
    assert result.status == "failed"
    assert result.error_code == "invalid_output"
    assert "output schema" in (result.error_message or "")
    assert len(result.attempts) == 2
    assert result.output is None
    assert "label" not in result.context["custom_context"]
    assert events.types()[-1] == "error"


async def test_invalid_output_does_not_trip_the_breaker(factory, sleeps) -> None:
    from agents.engine import BreakerPolicy, BreakerRegistry

    registry = BreakerRegistry(BreakerPolicy(minimum_calls=1, confidence_z=0))
    agent = structured_agent(retry=RetryConfig(max_attempts=2, backoff_seconds=1.0))
    factory.add(agent.provider, reply("nope"), reply('{"label": "bug", "confidence": 1}'))
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="x"),
        provider_factory=factory,
        breakers=registry,
        sleep=sleeps,
    )
    assert result.status == "completed"
    assert registry.get(agent.provider).state == "closed"
