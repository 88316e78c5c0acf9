"""The gateway side of /v1: virtual models over the price table's routable models, upstream
failures as errors naming the execution, tokens and JWTs as keys, a dropped stream cancelling
its run, and the length finish reason."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import openai
import pytest
from django_tenants.utils import schema_context

from agents.models import Agent, Execution, ModelPrice
from tests.api.conftest import auth

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]


def _status(live_server_url, key: str, execution_id: str, wanted: set[str]) -> str:
    deadline = time.monotonic() + 10
    status = ""
    while time.monotonic() < deadline:
        status = httpx.get(
            f"{live_server_url.url}/executions/{execution_id}", headers=auth(key), timeout=10
        ).json()["status"]
        if status in wanted:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{execution_id} stayed {status}")


def test_a_virtual_model_routes_over_the_price_tables_models(
    openai_client, live_llm_agent, fake_llm
):
    made = live_llm_agent()
    with schema_context(made.persona.schema):
        ModelPrice.objects.create(
            model="fake-cheap",
            credential=made.credential,
            input_per_million=Decimal("0.10"),
            output_per_million=Decimal("0.20"),
        )
    fake_llm.script(made.key, {"reply": "routed"})
    client = openai_client(made.persona.user_key)
    assert "cb:cost-optimal" in [m.id for m in client.models.list()]
    completion = client.chat.completions.create(model="cb:cost-optimal", messages=HI)
    assert completion.choices[0].message.content == "routed"
    assert fake_llm.requests(made.key)[-1]["json"]["model"] == "fake-cheap"
    assert completion.model == "fake-cheap"


def test_an_upstream_failure_is_an_error_naming_the_execution(
    live_server_url, openai_client, live_llm_agent, fake_llm
):
    made = live_llm_agent()
    fake_llm.script(made.key, {"status": 401, "message": "bad upstream key"})
    client = openai_client(made.persona.user_key)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="fake-model", messages=HI)
    assert caught.value.status_code == 502
    error = caught.value.response.json()["error"]
    assert error["code"] == "authentication" and error["type"] == "server_error"
    execution_id = caught.value.response.headers["X-Execution-ID"]
    assert error["execution_id"] == execution_id
    assert _status(live_server_url, made.persona.user_key, execution_id, {"failed"}) == "failed"


def test_a_tenant_jwt_works_as_the_api_key_and_no_key_is_401(
    live_server_url, openai_client, live_llm_agent, fake_llm
):
    made = live_llm_agent()
    token = httpx.post(
        f"{live_server_url.url}/auth/token", headers=auth(made.persona.user_key), json={}
    ).json()["access_token"]
    fake_llm.script(made.key, {"reply": "token ok"})
    reply = openai_client(token).chat.completions.create(model="fake-model", messages=HI)
    assert reply.choices[0].message.content == "token ok"
    bare = httpx.post(
        f"{live_server_url.url}/v1/chat/completions",
        json={"model": "fake-model", "messages": HI},
        timeout=10,
    )
    assert bare.status_code == 401
    assert bare.json()["error"]["type"] == "authentication_error"


def test_a_client_dropping_its_stream_cancels_the_run(
    live_server_url, openai_client, live_llm_agent, fake_llm
):
    made = live_llm_agent()
    fake_llm.script(made.key, {"reply": "a b c d e f g h i j", "chunks": 10, "chunk_delay": 0.5})
    client = openai_client(made.persona.user_key)
    with client.chat.completions.with_streaming_response.create(
        model="fake-model", messages=HI, stream=True
    ) as response:
        execution_id = response.headers["X-Execution-ID"]
        for chunk in response.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                break
    status = _status(live_server_url, made.persona.user_key, execution_id, {"cancelled"})
    assert status == "cancelled"


def test_length_finish_reason(openai_client, live_llm_agent, fake_llm):
    made = live_llm_agent()
    fake_llm.script(
        made.key, {"reply": "cut off", "finish": "length"}, {"reply": "cut", "finish": "length"}
    )
    client = openai_client(made.persona.user_key)
    completion = client.chat.completions.create(model="fake-model", messages=HI, max_tokens=2)
    assert completion.choices[0].finish_reason == "length"
    response = client.responses.create(model="fake-model", input="hi", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"


def test_a_reply_withdrawn_mid_stream_ends_the_stream_and_the_run_goes_on(
    live_server_url, openai_client, live_llm_agent, fake_llm
):
    made = live_llm_agent()
    fake_llm.script(
        made.key,
        {"reply": "first try that breaks", "chunks": 4, "reset_mid_stream": True},
        {"reply": "second try"},
    )
    client = openai_client(made.persona.user_key)
    seen: list[str] = []
    with client.chat.completions.with_streaming_response.create(
        model="fake-model", messages=HI, stream=True
    ) as response:
        execution_id = response.headers["X-Execution-ID"]
        with pytest.raises(openai.APIError) as caught:
            for chunk in response.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    seen.append(chunk.choices[0].delta.content)
    assert seen, "text was streamed before the attempt broke"
    assert caught.value.body["code"] == "stream_reset"
    assert execution_id in caught.value.message
    # The core retried the model call: the run completes with the second reply.
    key = made.persona.user_key
    assert _status(live_server_url, key, execution_id, {"completed"}) == "completed"
    stored = httpx.get(
        f"{live_server_url.url}/executions/{execution_id}", headers=auth(key), timeout=10
    ).json()
    assert stored["output"] == "second try"


def test_concurrent_first_calls_share_one_gateway_agent(openai_client, live_llm_agent, fake_llm):
    made = live_llm_agent()
    client = openai_client(made.persona.user_key)

    def ask(n: int) -> str:
        reply = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": f"question {n}"}]
        )
        return reply.choices[0].message.content or ""

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(ask, range(6)))
    assert sorted(answers) == sorted(f"Echo: question {n}" for n in range(6))
    with schema_context(made.persona.schema):
        gateways = Agent.objects.filter(slug__startswith="gateway-", credential=made.credential)
        assert gateways.count() == 1
        assert Execution.objects.filter(agent=gateways.get()).count() == 6
