from __future__ import annotations

import pytest

from agents.engine import ExecutionInput, PromptRenderError, render_template, run_agent
from agents.engine.prompts import UNTRUSTED_TOOL_NOTE, build_user_message

from .fakes import make_agent, make_context, reply

CTX = make_context()


def test_renders_input_and_dotted_context_lookups() -> None:
    text = render_template(
        "Hi {name}, user {user_context.user_id}, first {items.0}, obj {data}",
        {"name": "Ada", "items": ["x", "y"], "data": {"k": 1}},
        CTX,
    )
    assert text == 'Hi Ada, user user123, first x, obj {"k": 1}'


def test_input_keys_shadow_context_keys() -> None:
    assert render_template("{tenant_id}", {"tenant_id": "from-input"}, CTX) == "from-input"


def test_null_values_render_empty() -> None:
    assert render_template("[{x}]", {"x": None}) == "[]"


def test_double_braces_escape() -> None:
    assert render_template('{{"json": {v}}}', {"v": 1}) == '{"json": 1}'
    assert render_template("{{name}}", {"name": "no"}) == "{name}"


def test_missing_placeholder_names_it() -> None:
    with pytest.raises(PromptRenderError) as info:
        render_template("Hello {user_context.nickname}", {}, CTX)
    assert info.value.placeholder == "user_context.nickname"
    assert "user_context.nickname" in info.value.message


@pytest.mark.parametrize(
    "template",
    [
        "{x.__class__}",
        "{x.__class__.__init__.__globals__}",
        "{x.upper}",
    ],
)
def test_no_attribute_access_into_python_objects(template: str) -> None:
    # str.format would happily walk these attributes; the renderer only reads JSON data.
    with pytest.raises(PromptRenderError):
        render_template(template, {"x": "text"})


@pytest.mark.parametrize(
    "template",
    ["{x[0]}", "{x!r}", "{x:>10}", "{}", "{0}", "{ x y }", "open {x", "close }", "{a-b}"],
)
def test_malformed_placeholders_are_errors(template: str) -> None:
    with pytest.raises(PromptRenderError):
        render_template(template, {"x": "v", "0": "zero"})


def test_user_message_fallbacks() -> None:
    assert build_user_message("", {"message": "m"}, CTX, "m") == "m"
    assert build_user_message("", {"a": 1}, CTX, None) == '{"a": 1}'


async def test_system_prompt_and_instructions_are_sent(factory, breakers) -> None:
    provider = factory.add(make_agent().provider, reply())
    agent = make_agent(
        system_prompt="You are a triage bot.",
        context_instructions="Answer in French.",
        user_template="Ticket for {user_context.user_id}: {message}",
    )
    await run_agent(
        agent=agent,
        context=CTX,
        input=ExecutionInput(message="printer on fire"),
        provider_factory=factory,
        breakers=breakers,
    )
    system, user = provider.requests[0].messages
    assert system.role == "system"
    assert system.content == "You are a triage bot.\n\nAnswer in French."
    assert UNTRUSTED_TOOL_NOTE not in system.content
    assert user.role == "user"
    assert user.content == "Ticket for user123: printer on fire"


async def test_render_error_is_a_failed_result(factory, events, breakers) -> None:
    provider = factory.add(make_agent().provider, reply())
    result = await run_agent(
        agent=make_agent(user_template="Hello {who}"),
        context=CTX,
        input=ExecutionInput(message="x"),
        emit=events,
        provider_factory=factory,
        breakers=breakers,
    )
    assert result.status == "failed"
    assert result.error_code == "prompt_render_error"
    assert "{who}" in (result.error_message or "")
    assert provider.requests == []
    assert events.of("error") == [
        {"type": "error", "code": "prompt_render_error", "message": result.error_message}
    ]


async def test_nothing_to_send_is_invalid_input(factory, breakers) -> None:
    factory.add(make_agent().provider, reply())
    result = await run_agent(
        agent=make_agent(),
        context=CTX,
        input=ExecutionInput(),
        provider_factory=factory,
        breakers=breakers,
    )
    assert result.error_code == "invalid_input"
