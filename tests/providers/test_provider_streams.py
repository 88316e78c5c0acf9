"""Each provider adapter against the fake server: replies, streaming, tools, usage, JSON."""

from __future__ import annotations

import json

import pytest

from agents.providers import (
    ChatRequest,
    Finished,
    Message,
    TextDelta,
    ToolCall,
    ToolSpec,
    UsageReport,
    complete,
    get_provider,
)
from tests.providers.conftest import KINDS

pytestmark = pytest.mark.parametrize("kind", KINDS)

WEATHER = ToolSpec(
    name="get_weather",
    description="Weather for a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
)


def ask(text: str, **kwargs: object) -> ChatRequest:
    return ChatRequest(model="test-model", messages=(Message("user", text),), **kwargs)  # type: ignore[arg-type]


async def test_plain_reply_streams_in_chunks(kind, make_config, fake_llm, api_key):
    provider = get_provider(make_config(kind))
    events = [e async for e in provider.stream(ask("hello brave new world"))]

    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1
    assert "".join(d.text for d in deltas) == "Echo: hello brave new world"
    assert isinstance(events[-1], Finished)
    assert events[-1].finish_reason == "stop"
    assert events[-1].model == "test-model"
    assert sum(isinstance(e, UsageReport) for e in events) == 1


async def test_complete_collects_reply_and_reported_usage(kind, make_config, fake_llm, api_key):
    result = await complete(get_provider(make_config(kind)), ask("count my tokens please"))

    assert result.text == "Echo: count my tokens please"
    assert result.chunks > 1
    assert result.usage.estimated is False
    assert result.usage.input_tokens > 0
    assert result.usage.output_tokens > 0
    assert result.tool_calls == ()


async def test_missing_usage_is_estimated(kind, make_config, fake_llm, api_key):
    fake_llm.script(api_key, {"reply": "a reply of some length", "usage": False})
    result = await complete(get_provider(make_config(kind)), ask("x" * 40))

    assert result.text == "a reply of some length"
    assert result.usage.estimated is True
    assert result.usage.input_tokens == 10  # 40 chars / 4
    assert result.usage.output_tokens == 6  # 22 chars / 4, rounded up


async def test_tool_calls_are_assembled(kind, make_config, fake_llm, api_key):
    fake_llm.script(
        api_key,
        {
            "tool_calls": [
                {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}},
                {"name": "get_weather", "arguments": {"city": "Oslo"}},
            ]
        },
    )
    result = await complete(get_provider(make_config(kind)), ask("weather?", tools=(WEATHER,)))

    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        ("get_weather", {"city": "Paris", "days": 2}),
        ("get_weather", {"city": "Oslo"}),
    ]
    assert all(c.id for c in result.tool_calls)
    assert len({c.id for c in result.tool_calls}) == 2
    assert result.finish_reason == "tool_calls"


async def test_json_mode_reply_is_an_object(kind, make_config, fake_llm, api_key):
    result = await complete(get_provider(make_config(kind)), ask("structured", json_mode=True))

    assert json.loads(result.text) == {"echo": "structured"}


async def test_scripted_json_and_length_finish(kind, make_config, fake_llm, api_key):
    fake_llm.script(api_key, {"json": {"answer": 42}, "finish": "length"})
    result = await complete(get_provider(make_config(kind)), ask("q", json_mode=True))

    assert json.loads(result.text) == {"answer": 42}
    assert result.finish_reason == "length"


async def test_conversation_with_tool_round_trip_is_accepted(kind, make_config, fake_llm, api_key):
    call = ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})
    request = ChatRequest(
        model="test-model",
        messages=(
            Message("system", "You are terse."),
            Message("user", "weather in Paris?"),
            Message("assistant", "", tool_calls=(call,)),
            Message("tool", '{"temp": 21}', tool_call_id="call_1", name="get_weather"),
            Message("user", "and now?"),
        ),
        tools=(WEATHER,),
        temperature=0.2,
        max_tokens=50,
        stop=("END",),
    )
    result = await complete(get_provider(make_config(kind)), request)

    assert result.text == "Echo: and now?"
    (sent,) = fake_llm.requests(api_key)
    body = sent["json"]
    # The API key travels in a header that the fake never logs, never in the URL.
    assert api_key not in json.dumps(sent)
    if kind == "openai":
        assert sent["path"] == "/v1/chat/completions"
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        assert body["temperature"] == 0.2 and body["max_tokens"] == 50 and body["stop"] == ["END"]
        assert "top_p" not in body and "frequency_penalty" not in body
        assert body["messages"][2]["tool_calls"][0]["function"] == {
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        }
        assert body["messages"][3] == {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": '{"temp": 21}',
        }
        assert body["tools"][0]["function"]["name"] == "get_weather"
    elif kind == "anthropic":
        assert sent["path"] == "/v1/messages"
        assert sent["headers"]["anthropic-version"] == "2023-06-01"
        assert body["system"] == "You are terse."
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        assert body["messages"][1]["content"] == [
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
        ]
        assert body["messages"][2]["content"][0] == {
            "type": "tool_result",
            "tool_use_id": "call_1",
            "content": '{"temp": 21}',
        }
        assert body["stop_sequences"] == ["END"] and body["max_tokens"] == 50
        assert body["tools"][0]["input_schema"] == WEATHER.parameters
    elif kind == "google":
        assert sent["path"] == "/v1beta/models/test-model:streamGenerateContent"
        assert sent["query"] == "alt=sse"
        assert body["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
        assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
        assert body["contents"][1]["parts"] == [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
        ]
        assert body["contents"][2]["parts"][0] == {
            "functionResponse": {"name": "get_weather", "response": {"temp": 21}}
        }
        assert body["generationConfig"] == {
            "temperature": 0.2,
            "maxOutputTokens": 50,
            "stopSequences": ["END"],
        }
        assert body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    else:
        assert sent["path"] == "/api/chat"
        assert body["stream"] is True
        assert body["options"] == {"temperature": 0.2, "num_predict": 50, "stop": ["END"]}
        assert body["messages"][2]["tool_calls"] == [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
        ]
        assert body["messages"][3]["role"] == "tool"


async def test_json_mode_is_requested_on_the_wire(kind, make_config, fake_llm, api_key):
    await complete(get_provider(make_config(kind)), ask("q", json_mode=True))

    body = fake_llm.requests(api_key)[-1]["json"]
    if kind == "openai":
        assert body["response_format"] == {"type": "json_object"}
    elif kind == "anthropic":
        assert "JSON object" in body["system"]
    elif kind == "google":
        assert body["generationConfig"]["responseMimeType"] == "application/json"
    else:
        assert body["format"] == "json"


async def test_latency_then_reply(kind, make_config, fake_llm, api_key):
    fake_llm.script(api_key, {"latency": 0.1, "reply": "slow but fine", "chunks": 3})
    result = await complete(get_provider(make_config(kind)), ask("q"))

    assert result.text == "slow but fine"
    assert result.chunks == 3


async def test_sequential_requests_reuse_the_connection(kind, make_config, fake_llm, api_key):
    provider = get_provider(make_config(kind))
    await complete(provider, ask("one"))
    await complete(provider, ask("two"))

    first, second = fake_llm.requests(api_key)
    assert first["client_port"] == second["client_port"]
