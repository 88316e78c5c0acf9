"""Errors of /v1 in OpenAI's shape, as the SDK raises them: 401, 403, 404 (unknown models and
other tenants' agents), 400 naming the unsupported parameter, 429 from the plan with Retry-After."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.api.conftest import auth

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]


def _error(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return body["error"]


def test_a_bad_key_is_401_in_openai_shape(openai_client):
    client = openai_client("cba_not-a-real-key")
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="fake-model", messages=HI)
    assert _error(caught.value)["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_a_readonly_key_may_list_models_but_not_run(openai_client, live_llm_agent):
    made = live_llm_agent()
    client = openai_client(made.persona.readonly_key)
    assert client.models.list().data
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="fake-model", messages=HI)
    assert _error(caught.value)["type"] == "permission_error"


def test_unknown_models_and_other_tenants_agents_are_not_found(
    openai_client, live_llm_agent, committed_personas
):
    made = live_llm_agent(slug="alpha-only")
    alpha = openai_client(made.persona.user_key)
    bravo = openai_client(committed_personas["bravo"].user_key)
    for client, model in [
        (alpha, "no-such-model"),
        (alpha, "agent:nobody"),
        (alpha, "cb:nonsense"),
        (bravo, "agent:alpha-only"),
        (bravo, "fake-model"),  # alpha's credential's model is not bravo's to call
    ]:
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model=model, messages=HI)
        error = _error(caught.value)
        assert error["code"] == "model_not_found", model
        with pytest.raises(openai.NotFoundError):
            client.responses.create(model=model, input="hi")
    with pytest.raises(openai.NotFoundError):
        bravo.models.retrieve("agent:alpha-only")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"seed": 7}, "seed"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"temperature": 5}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_unsupported_or_bad_parameters_are_400_naming_them(
    openai_client, live_llm_agent, fake_llm, extra, param
):
    made = live_llm_agent()
    client = openai_client(made.persona.user_key)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="fake-model", messages=HI, **extra)
    error = _error(caught.value)
    assert error["param"] == param and param in error["message"]
    assert fake_llm.requests(made.key) == []


def test_unknown_parameters_and_bad_messages_are_400(live_server_url, live_llm_agent):
    made = live_llm_agent()
    for body, param in [
        ({"model": "fake-model", "messages": HI, "frobnicate": 1}, "frobnicate"),
        ({"model": "fake-model", "messages": []}, "messages"),
        ({"messages": HI}, "model"),
        (
            {
                "model": "fake-model",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            },
            "messages[0].content[0].type",
        ),
    ]:
        response = httpx.post(
            f"{live_server_url.url}/v1/chat/completions",
            headers=auth(made.persona.user_key),
            json=body,
            timeout=10,
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param


def test_a_plan_limit_is_429_with_retry_after(openai_client, live_llm_agent, fake_llm, plan_on):
    made = live_llm_agent()
    # A daily token quota no call fits in: admission refuses before any model call.
    plan_on(made.persona, tokens_per_day=10)
    client = openai_client(made.persona.user_key)
    for call in (
        lambda: client.chat.completions.create(model="fake-model", messages=HI),
        lambda: client.chat.completions.create(model="fake-model", messages=HI, stream=True),
        lambda: client.responses.create(model="fake-model", input="hi"),
    ):
        with pytest.raises(openai.RateLimitError) as caught:
            call()
        assert int(caught.value.response.headers["Retry-After"]) >= 1
        error = _error(caught.value)
        assert error["type"] == "rate_limit_error" and "token" in error["message"]
    assert fake_llm.requests(made.key) == []


def test_endpoints_not_offered_are_404_in_openai_shape(openai_client, live_llm_agent):
    made = live_llm_agent()
    client = openai_client(made.persona.user_key)
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="fake-model", input="hi")
    assert _error(caught.value)["type"] == "invalid_request_error"
