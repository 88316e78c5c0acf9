from __future__ import annotations

from decimal import Decimal

import pytest

from agents.engine import (
    ExecutionInput,
    ModelOption,
    ModelResolutionError,
    ModelTarget,
    PriceTable,
    is_virtual,
    resolve_model,
    run_agent,
)
from agents.engine.routing import AUTO_LONG_PROMPT_CHARS

from .fakes import PRIMARY, SECONDARY, make_agent, make_context, reply

PRICES = PriceTable(
    {
        "mini": (Decimal("0.15"), Decimal("0.60")),
        "flash": (Decimal("0.10"), Decimal("0.40")),
        "big": (Decimal("2.50"), Decimal("10")),
        "opus": (Decimal("15"), Decimal("75")),
        "coder": (Decimal("3"), Decimal("15")),
    }
)
MINI = ModelOption(ModelTarget(PRIMARY, "mini"), frozenset({"fast", "chat"}))
FLASH = ModelOption(ModelTarget(SECONDARY, "flash"))
BIG = ModelOption(ModelTarget(PRIMARY, "big"), frozenset({"chat", "analysis"}))
OPUS = ModelOption(ModelTarget(SECONDARY, "opus"))
CODER = ModelOption(ModelTarget(SECONDARY, "coder"), frozenset({"coding"}))
OPTIONS = (MINI, FLASH, BIG, OPUS, CODER)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cb:cost-optimal", "flash"),
        ("cb:fastest", "mini"),  # tagged fast beats a cheaper untagged model
        ("cb:coding", "coder"),
        ("cb:analysis", "big"),
        ("cb:smart-chat", "big"),  # the most expensive chat-tagged option
        ("cb:creative", "opus"),  # nothing tagged creative: the smartest overall
    ],
)
def test_resolution_rules(name: str, expected: str) -> None:
    assert resolve_model(name, OPTIONS, PRICES).model == expected


def test_fastest_without_fast_tag_is_cheapest() -> None:
    assert resolve_model("cb:fastest", (BIG, FLASH, OPUS), PRICES).model == "flash"


def test_auto_depends_on_prompt_length() -> None:
    assert resolve_model("auto", OPTIONS, PRICES, prompt_chars=10).model == "flash"
    long = AUTO_LONG_PROMPT_CHARS
    assert resolve_model("auto", OPTIONS, PRICES, prompt_chars=long).model == "big"


def test_unpriced_options_and_ties() -> None:
    unknown = ModelOption(ModelTarget(PRIMARY, "unknown-model"))
    assert resolve_model("cb:cost-optimal", (unknown, MINI), PRICES).model == "mini"
    assert resolve_model("cb:creative", (unknown, MINI), PRICES).model == "mini"
    assert resolve_model("cb:cost-optimal", (unknown,), PRICES).model == "unknown-model"
    twin = ModelOption(ModelTarget(SECONDARY, "mini"))
    assert resolve_model("cb:cost-optimal", (MINI, twin), PRICES).provider == PRIMARY


def test_unknown_names_and_empty_options_are_clear_errors() -> None:
    with pytest.raises(ModelResolutionError, match="cb:turbo"):
        resolve_model("cb:turbo", OPTIONS, PRICES)
    with pytest.raises(ModelResolutionError, match="no models"):
        resolve_model("cb:fastest", (), PRICES)
    assert is_virtual("auto") and is_virtual("cb:anything") and not is_virtual("gpt-4o")


async def test_run_resolves_the_virtual_model(factory, events, breakers) -> None:
    backup = factory.add(SECONDARY, reply("cheap answer", model="flash"))
    result = await run_agent(
        agent=make_agent(model="cb:cost-optimal"),
        context=make_context(),
        input=ExecutionInput(message="x"),
        emit=events,
        prices=PRICES,
        models=OPTIONS,
        provider_factory=factory,
        breakers=breakers,
    )
    assert result.status == "completed"
    assert result.requested_model == "cb:cost-optimal"
    assert result.model_used == "flash"
    assert backup.requests[0].model == "flash"
    assert events.events[0]["model"] == "cb:cost-optimal"
    assert "resolved to flash" in events.of("thinking")[0]["message"]


async def test_unknown_virtual_model_fails_the_run(factory, breakers) -> None:
    result = await run_agent(
        agent=make_agent(model="cb:nonsense"),
        context=make_context(),
        input=ExecutionInput(message="x"),
        models=OPTIONS,
        provider_factory=factory,
        breakers=breakers,
    )
    assert result.status == "failed"
    assert result.error_code == "model_resolution_error"
    assert "cb:nonsense" in (result.error_message or "")
