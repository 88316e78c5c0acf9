"""/v1/chat/completions with the official OpenAI SDK against a live server and the fake LLM:
plain, streamed with usage, tools passed through, agents as models, the execution over REST."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.api.conftest import auth

pytestmark = pytest.mark.django_db(transaction=True)


def _execution(live_server_url: Any, key: str, execution_id: str) -> httpx.Response:
    return httpx.get(
        f"{live_server_url.url}/executions/{execution_id}", headers=auth(key), timeout=10
    )


def test_plain_completion_is_an_execution_visible_over_rest(
    live_server_url, openai_client, live_llm_agent, fake_llm, committed_personas
):
    made = live_llm_agent()
    fake_llm.script(made.key, {"reply": "Hello from the gateway", "chunks": 3})
    client = openai_client(made.persona.user_key)
    raw = client.chat.completions.with_raw_response.create(
        model="fake-model",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
        temperature=0.2,
        max_tokens=50,
        user="end-user-7",
    )
    completion = raw.parse()
    execution_id = raw.headers["X-Execution-ID"]
    assert completion.id == f"chatcmpl-{execution_id}"
    assert completion.object == "chat.completion"
    assert completion.model == "fake-model"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello from the gateway"
    assert choice.finish_reason == "stop"
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.usage.completion_tokens > 0

    # The model saw the messages as sent (no agent prompt around them), with the sampling asked.
    sent = fake_llm.requests(made.key)[-1]["json"]
    assert sent["model"] == "fake-model"
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert sent["messages"][1]["content"] == "Say hello"
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 50

    # An ordinary execution: readable over REST with the same usage; bravo cannot see it.
    stored = _execution(live_server_url, made.persona.user_key, execution_id)
    assert stored.status_code == 200, stored.text
    body = stored.json()
    assert body["status"] == "completed" and body["output"] == "Hello from the gateway"
    assert body["context"]["user_context"] == {"user": "end-user-7"}
    assert body["usage"]["input_tokens"] == completion.usage.prompt_tokens
    assert body["usage"]["output_tokens"] == completion.usage.completion_tokens
    bravo = committed_personas["bravo"]
    assert _execution(live_server_url, bravo.user_key, execution_id).status_code == 404

    # In the tenant's usage, under the credential's gateway agent.
    usage = httpx.get(
        f"{live_server_url.url}/usage",
        params={"agent": body["agent_id"], "group_by": "model"},
        headers=auth(made.persona.user_key),
        timeout=10,
    ).json()
    assert usage["totals"]["executions"] == 1
    assert usage["totals"]["total_tokens"] == completion.usage.total_tokens
    assert [row["model"] for row in usage["rows"]] == ["fake-model"]
    gateway = httpx.get(
        f"{live_server_url.url}/agents/{body['agent_id']}",
        headers=auth(made.persona.user_key),
        timeout=10,
    ).json()
    assert gateway["slug"] == f"gateway-{made.credential.name}"


def test_streaming_with_usage_ends_with_done(
    live_server_url, openai_client, live_llm_agent, fake_llm
):
    made = live_llm_agent()
    fake_llm.script(made.key, {"reply": "one two three four", "chunks": 4})
    client = openai_client(made.persona.user_key)
    stream = client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens

    # On the wire: SSE data lines, the last one [DONE]; the execution id in a header.
    with httpx.stream(
        "POST",
        f"{live_server_url.url}/v1/chat/completions",
        headers=auth(made.persona.user_key),
        json={
            "model": "fake-model",
            "messages": [{"role": "user", "content": "again"}],
            "stream": True,
        },
        timeout=20,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        execution_id = response.headers["X-Execution-ID"]
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    # Without include_usage no chunk carries usage.
    assert all("usage" not in json.loads(line[6:]) for line in lines[:-1])
    stored = _execution(live_server_url, made.persona.user_key, execution_id).json()
    assert stored["status"] == "completed"


def test_tool_calls_come_back_to_the_client_and_results_go_to_the_model(
    openai_client, live_llm_agent, fake_llm
):
    made = live_llm_agent()
    fake_llm.script(
        made.key,
        {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
        {"reply": "It is sunny in Paris."},
    )
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    client = openai_client(made.persona.user_key)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="fake-model", messages=messages, tools=tools)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    offered = fake_llm.requests(made.key)[-1]["json"]["tools"]
    assert offered[0]["function"]["name"] == "get_weather"

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'})
    second = client.chat.completions.create(model="fake-model", messages=messages, tools=tools)
    assert second.choices[0].message.content == "It is sunny in Paris."
    assert second.choices[0].finish_reason == "stop"
    sent = fake_llm.requests(made.key)[-1]["json"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["tool_calls"][0]["id"] == call.id
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'}


def test_streamed_tool_calls(openai_client, live_llm_agent, fake_llm):
    made = live_llm_agent()
    fake_llm.script(made.key, {"tool_calls": [{"name": "lookup", "arguments": {"q": "x"}}]})
    client = openai_client(made.persona.user_key)
    chunks = list(
        client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "look it up"}],
            tools=[{"type": "function", "function": {"name": "lookup"}}],
            stream=True,
        )
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.index, tc.function.name) for tc in calls] == [(0, "lookup")], chunks
    assert json.loads(calls[0].function.arguments) == {"q": "x"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_an_agent_as_the_model(
    live_server_url, openai_client, live_llm_agent, fake_llm, committed_personas
):
    made = live_llm_agent(system_prompt="You are the support agent.", slug="support")
    fake_llm.script(made.key, {"reply": "How can I help?"})
    client = openai_client(made.persona.user_key)
    raw = client.chat.completions.with_raw_response.create(
        model="agent:support",
        messages=[
            {"role": "system", "content": "Answer in English."},
            {"role": "user", "content": "Hi"},
        ],
    )
    assert raw.parse().choices[0].message.content == "How can I help?"
    sent = fake_llm.requests(made.key)[-1]["json"]["messages"]
    # The agent's prompt first, the caller's system message appended, then the conversation.
    assert sent[0] == {"role": "system", "content": "You are the support agent."}
    assert sent[1] == {"role": "system", "content": "Answer in English."}
    assert sent[2]["role"] == "user" and sent[2]["content"] == "Hi"
    stored = _execution(live_server_url, made.persona.user_key, raw.headers["X-Execution-ID"])
    assert stored.json()["agent_id"] == made.agent.id

    # The catalogue: agents as agent:<slug>, callable models, virtual models; per tenant.
    ids = [m.id for m in client.models.list()]
    assert "agent:support" in ids and "fake-model" in ids
    assert not any(i.startswith("agent:gateway-") for i in ids)
    assert client.models.retrieve("agent:support").id == "agent:support"
    bravo = openai_client(committed_personas["bravo"].user_key)
    assert "agent:support" not in [m.id for m in bravo.models.list()]


def test_idempotency_key_replays_the_first_execution(openai_client, live_llm_agent, fake_llm):
    made = live_llm_agent()
    fake_llm.script(made.key, {"reply": "only once"})
    client = openai_client(made.persona.user_key)
    request = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "charge my card"}],
        "extra_headers": {"Idempotency-Key": "order-42"},
    }
    first = client.chat.completions.with_raw_response.create(**request)
    again = client.chat.completions.with_raw_response.create(**request)
    assert again.headers["X-Execution-ID"] == first.headers["X-Execution-ID"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.parse().choices[0].message.content == "only once"
    assert len(fake_llm.requests(made.key)) == 1


def test_idempotency_key_on_a_stream_and_with_another_body(openai_client, live_llm_agent, fake_llm):
    made = live_llm_agent()
    fake_llm.script(made.key, {"reply": "streamed once", "chunks": 2})
    client = openai_client(made.persona.user_key)
    request = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "stream it"}],
        "stream": True,
        "extra_headers": {"Idempotency-Key": "stream-7"},
    }
    texts, ids = [], []
    for _ in range(2):
        with client.chat.completions.with_streaming_response.create(**request) as response:
            ids.append(response.headers["X-Execution-ID"])
            texts.append(
                "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
            )
    assert texts == ["streamed once", "streamed once"] and ids[0] == ids[1]
    assert len(fake_llm.requests(made.key)) == 1
    with pytest.raises(openai.ConflictError) as caught:
        client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "something else"}],
            extra_headers={"Idempotency-Key": "stream-7"},
        )
    assert caught.value.response.json()["error"]["code"] == "idempotency_key_reused"
