"""/v1/responses with the official SDK: plain, streamed events, function calls round trip."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import auth

pytestmark = pytest.mark.django_db(transaction=True)


def test_plain_response(
    live_server_url, openai_client, live_llm_agent, fake_llm, committed_personas
):
    made = live_llm_agent()
    fake_llm.script(made.key, {"reply": "Responses work", "chunks": 2})
    client = openai_client(made.persona.user_key)
    raw = client.responses.with_raw_response.create(
        model="fake-model", input="Do they?", instructions="Be brief.", max_output_tokens=40
    )
    response = raw.parse()
    execution_id = raw.headers["X-Execution-ID"]
    assert response.id == f"resp_{execution_id}" and response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "Responses work"
    assert response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    sent = fake_llm.requests(made.key)[-1]["json"]
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Do they?"},
    ]
    assert sent["max_tokens"] == 40
    stored = httpx.get(
        f"{live_server_url.url}/executions/{execution_id}",
        headers=auth(made.persona.user_key),
        timeout=10,
    ).json()
    assert stored["output"] == "Responses work"
    bravo = committed_personas["bravo"]
    assert (
        httpx.get(
            f"{live_server_url.url}/executions/{execution_id}",
            headers=auth(bravo.user_key),
            timeout=10,
        ).status_code
        == 404
    )
    assert stored["usage"]["output_tokens"] == response.usage.output_tokens


def test_streamed_response_events(openai_client, live_llm_agent, fake_llm):
    made = live_llm_agent()
    fake_llm.script(made.key, {"reply": "streamed words here", "chunks": 3})
    client = openai_client(made.persona.user_key)
    events = list(
        client.responses.create(
            model="fake-model",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "go"}]}],
            stream=True,
        )
    )
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert "response.output_item.added" in types and "response.output_text.done" in types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "streamed words here"
    final = events[-1].response
    assert final.output_text == "streamed words here"
    assert final.usage.output_tokens > 0


def test_function_calls_round_trip(openai_client, live_llm_agent, fake_llm):
    made = live_llm_agent()
    fake_llm.script(
        made.key,
        {"tool_calls": [{"name": "get_time", "arguments": {"tz": "UTC"}}]},
        {"reply": "It is noon."},
    )
    tools = [
        {
            "type": "function",
            "name": "get_time",
            "description": "Current time",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
        }
    ]
    client = openai_client(made.persona.user_key)
    first = client.responses.create(model="fake-model", input="time?", tools=tools)
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_time" and json.loads(call.arguments) == {"tz": "UTC"}
    second = client.responses.create(
        model="fake-model",
        tools=tools,
        input=[
            {"role": "user", "content": "time?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "12:00"},
        ],
    )
    assert second.output_text == "It is noon."
    sent = fake_llm.requests(made.key)[-1]["json"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[2]["tool_call_id"] == call.call_id and sent[2]["content"] == "12:00"


def test_unsupported_responses_parameters_are_400(openai_client, live_llm_agent):
    import openai

    made = live_llm_agent()
    client = openai_client(made.persona.user_key)
    for extra, param in [
        ({"previous_response_id": "resp_x"}, "previous_response_id"),
        ({"reasoning": {"effort": "low"}}, "reasoning"),
        ({"store": True}, "store"),
    ]:
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="fake-model", input="hi", **extra)
        assert caught.value.response.json()["error"]["param"] == param


def test_streamed_function_call_events(openai_client, live_llm_agent, fake_llm):
    made = live_llm_agent()
    fake_llm.script(made.key, {"tool_calls": [{"name": "get_time", "arguments": {"tz": "CET"}}]})
    client = openai_client(made.persona.user_key)
    events = list(
        client.responses.create(
            model="fake-model",
            input="time?",
            tools=[{"type": "function", "name": "get_time", "parameters": {"type": "object"}}],
            stream=True,
        )
    )
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(done.arguments) == {"tz": "CET"}
    final = events[-1]
    assert final.type == "response.completed"
    (call,) = final.response.output
    assert call.type == "function_call" and call.name == "get_time"
    assert not any(e.type == "response.output_text.delta" for e in events)
