from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import get_args

from agents.engine import (
    TERMINAL_EVENT_TYPES,
    ExecutionInput,
    ModelTarget,
    PriceTable,
    RetryConfig,
    run_agent,
)
from agents.engine.events import Event, EventSink, EventType
from agents.providers.base import ErrorKind, ProviderError, TextDelta, Usage

from .fakes import SECONDARY, make_agent, make_context, reply

PRICES = PriceTable(
    {
        "gpt-test": (Decimal("2.50"), Decimal("10.00")),
        "claude-test": (Decimal("3"), Decimal("15")),
    }
)


async def test_event_sequence_of_a_streamed_run(factory, events, breakers) -> None:
    factory.add(make_agent().provider, reply("Hello, world!", pieces=3))
    result = await run_agent(
        agent=make_agent(),
        context=make_context(),
        input=ExecutionInput(message="hi"),
        emit=events,
        prices=PRICES,
        provider_factory=factory,
        breakers=breakers,
    )
    assert events.types() == [
        "execution.started",
        "chunk",
        "chunk",
        "chunk",
        "usage",
        "complete",
    ]
    started = events.events[0]
    assert started["execution_id"] == "exec456"
    assert started["agent_id"] == make_agent().id
    assert started["model"] == "gpt-test"
    datetime.fromisoformat(started["timestamp"])
    chunks = events.of("chunk")
    assert [c["sequence"] for c in chunks] == [1, 2, 3]
    assert "".join(c["text"] for c in chunks) == "Hello, world!"
    assert events.of("usage")[0] == {
        "type": "usage",
        "input_tokens": 10,
        "output_tokens": 5,
        "estimated": False,
    }
    complete = events.of("complete")[0]
    assert complete["output"] == "Hello, world!"
    assert complete["model"] == "gpt-test"
    assert complete["cost"] == str(result.cost)
    assert complete["usage"] == {"input_tokens": 10, "output_tokens": 5, "estimated": False}
    assert set(get_args(EventType)) >= TERMINAL_EVENT_TYPES


def kept_text(events: list[dict]) -> str:
    """What a client following the reset rule of agents.engine.events shows."""
    kept: list[dict] = []
    for event in events:
        if event["type"] == "chunk":
            kept.append(event)
        elif event["type"] == "reset":
            kept = [c for c in kept if c["sequence"] < event["discard_from_sequence"]]
    return "".join(c["text"] for c in kept)


async def test_text_of_a_stream_broken_part_way_is_withdrawn_before_the_retry(
    factory, events, sleeps, breakers
):
    agent = make_agent(retry=RetryConfig(max_attempts=2, backoff_seconds=1.0))
    factory.add(
        agent.provider,
        [TextDelta("par"), TextDelta("tial"), ProviderError(ErrorKind.NETWORK_ERROR, "reset")],
        reply("whole answer", pieces=2),
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
    assert result.output == "whole answer"
    assert events.types() == [
        "execution.started",
        "chunk",
        "chunk",
        "reset",
        "thinking",
        "chunk",
        "chunk",
        "usage",
        "complete",
    ]
    # Numbering never restarts; the reset says where the withdrawn text began.
    assert [c["sequence"] for c in events.of("chunk")] == [1, 2, 3, 4]
    reset = events.of("reset")[0]
    assert reset["discard_from_sequence"] == 1
    assert reset["reason"] == "network_error"
    assert "gpt-test" in reset["message"]
    assert "retrying" in events.of("thinking")[0]["message"]
    assert kept_text(events.events) == events.of("complete")[0]["output"] == "whole answer"


async def test_usage_and_cost_sum_across_attempts_and_models(factory, sleeps, breakers) -> None:
    agent = make_agent(
        retry=RetryConfig(max_attempts=1),
        fallbacks=(ModelTarget(provider=SECONDARY, model="claude-test"),),
        output_schema={"type": "object"},
    )
    factory.add(agent.provider, reply("not json", usage=Usage(1_000_000, 0)))
    factory.add(SECONDARY, reply("{}", model="claude-test", usage=Usage(0, 1_000_000)))
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="x"),
        prices=PRICES,
        provider_factory=factory,
        breakers=breakers,
        sleep=sleeps,
    )
    assert result.status == "completed"
    assert result.usage == Usage(1_000_000, 1_000_000, estimated=False)
    assert result.cost == Decimal("2.50") + Decimal("15")
    assert result.cost_known
    assert [a.usage for a in result.attempts] == [Usage(1_000_000, 0), Usage(0, 1_000_000)]


async def test_missing_usage_is_estimated_and_flagged(factory, events, breakers) -> None:
    factory.add(make_agent().provider, reply("x" * 40, usage=None))
    result = await run_agent(
        agent=make_agent(system_prompt=""),
        context=make_context(),
        input=ExecutionInput(message="y" * 80),
        emit=events,
        prices=PRICES,
        provider_factory=factory,
        breakers=breakers,
    )
    assert result.usage == Usage(20, 10, estimated=True)
    assert result.cost > 0
    assert events.of("usage")[0]["estimated"] is True
    assert events.of("complete")[0]["usage"]["estimated"] is True


async def test_estimated_flag_propagates_from_any_part(factory, breakers) -> None:
    agent = make_agent()
    factory.add(agent.provider, reply("a", usage=Usage(3, 4, estimated=True)))
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="x"),
        provider_factory=factory,
        breakers=breakers,
    )
    assert result.usage.estimated


async def test_unknown_model_costs_zero_and_is_flagged(factory, breakers) -> None:
    agent = make_agent(model="mystery-model")
    factory.add(agent.provider, reply("a", model="mystery-model"))
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="x"),
        prices=PRICES,
        provider_factory=factory,
        breakers=breakers,
    )
    assert result.cost == Decimal(0)
    assert not result.cost_known
    assert result.unpriced_models == ("mystery-model",)


def test_price_lookup_matches_dated_snapshots() -> None:
    table = PriceTable({"gpt-4o": (Decimal(5), Decimal(15)), "gpt-4o-mini": (1, 2)})
    assert table.lookup("gpt-4o-2024-08-06").input_per_million == Decimal(5)
    assert table.lookup("gpt-4o-mini-2024-07-18").input_per_million == Decimal(1)
    assert table.lookup("gpt-4") is None
    assert table.cost("gpt-4o", Usage(1000, 2000)) == Decimal("0.035")
    assert "gpt-4o-mini" in table


async def test_a_broken_sink_does_not_break_the_run(factory, breakers) -> None:
    async def broken(event: Event) -> None:
        raise ConnectionResetError("client went away")

    factory.add(make_agent().provider, reply("still done"))
    result = await run_agent(
        agent=make_agent(),
        context=make_context(),
        input=ExecutionInput(message="x"),
        emit=broken,
        provider_factory=factory,
        breakers=breakers,
    )
    assert result.status == "completed"

    sink = EventSink(broken)
    await sink.chunk("a")
    await sink.chunk("b")
    assert sink.chunks_sent == 2


async def test_execution_id_is_generated_when_absent(factory, events, breakers) -> None:
    factory.add(make_agent().provider, reply())
    ctx = make_context()
    del ctx["execution_id"]
    result = await run_agent(
        agent=make_agent(),
        context=ctx,
        input=ExecutionInput(message="x"),
        emit=events,
        provider_factory=factory,
        breakers=breakers,
    )
    assert result.execution_id.startswith("exec_")
    assert events.events[0]["execution_id"] == result.execution_id


async def test_default_provider_factory_with_the_echo_provider(events, breakers) -> None:
    from agents.providers.base import ProviderConfig

    agent = make_agent(provider=ProviderConfig(kind="echo", base_url="echo://local"), model="echo")
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(message="ping pong"),
        emit=events,
        breakers=breakers,
    )
    assert result.status == "completed"
    assert result.output == "echo: ping pong"
    assert "".join(c["text"] for c in events.of("chunk")) == "echo: ping pong"
    assert result.usage.estimated


async def test_provider_key_never_reaches_events_or_results(factory, events, sleeps, breakers):
    agent = make_agent(
        retry=RetryConfig(max_attempts=2, backoff_seconds=1.0),
        fallbacks=(ModelTarget(provider=SECONDARY, model="claude-test"),),
    )
    factory.add(
        agent.provider,
        [ProviderError(ErrorKind.TIMEOUT, "slow")],
        [ProviderError(ErrorKind.AUTHENTICATION, "bad key")],
    )
    factory.add(SECONDARY, [ProviderError(ErrorKind.SERVER_ERROR, "down")])
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
    dumped = repr(events.events) + repr(result)
    assert "sk-canary" not in dumped and "sk-2" not in dumped
