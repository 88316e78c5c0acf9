"""Execute (blocking and background), validation, list filters, detail, cancel, roles, 413."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django_tenants.utils import schema_context
from procrastinate.contrib.django.models import ProcrastinateJob

from agents.models import Execution, ExecutionStatus
from tenants.audit.models import AuditLog
from tests.runs import store_queued


def test_blocking_execute_returns_the_original_shape_with_usage(api, llm_agent, fake_llm):
    fake_llm.script(llm_agent.key, {"reply": "Hello from the fake", "chunks": 3})
    response = api(llm_agent.persona.user_key).post(
        f"/agents/{llm_agent.agent.slug}/execute",
        {"context": {"user_context": {"user_id": "u1"}}, "input": {"message": "Say hi"}},
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert {
        "execution_id",
        "agent_id",
        "status",
        "output",
        "error",
        "created_at",
        "context",
    } <= set(body)
    assert body["status"] == "completed" and body["output"] == "Hello from the fake"
    assert body["agent_id"] == llm_agent.agent.id and body["error"] is None
    assert body["context"]["user_context"] == {"user_id": "u1"}
    assert body["usage"]["input_tokens"] > 0 and body["model"]
    assert int(response["X-Platform-Overhead-Ms"]) >= 0
    sent = fake_llm.requests(llm_agent.key)[-1]["json"]
    assert sent["messages"][-1]["content"] == "Say hi"


def test_parameters_and_config_reach_the_provider(api, llm_agent, fake_llm):
    fake_llm.script(llm_agent.key, {"reply": "ok"})
    response = api(llm_agent.persona.user_key).post(
        f"/agents/{llm_agent.agent.id}/execute",
        {
            "input": {"message": "x", "parameters": {"temperature": 0.1, "max_tokens": 50}},
            "execution_config": {
                "timeout_seconds": 30,
                "retry_config": {"max_attempts": 2, "backoff_seconds": 0},
                "stream_format": "sse",
            },
        },
    )
    assert response.status_code == 200, response.json()
    sent = fake_llm.requests(llm_agent.key)[-1]["json"]
    assert sent["temperature"] == 0.1 and sent["max_tokens"] == 50


def test_a_per_call_model_goes_to_the_provider_and_is_recorded(api, llm_agent, fake_llm):
    fake_llm.script(llm_agent.key, {"reply": "ok"})
    response = api(llm_agent.persona.user_key).post(
        f"/agents/{llm_agent.agent.id}/execute",
        {"input": {"message": "x"}, "execution_config": {"model": "gpt-other"}},
    )
    assert response.status_code == 200, response.json()
    assert fake_llm.requests(llm_agent.key)[-1]["json"]["model"] == "gpt-other"
    with schema_context(llm_agent.persona.schema):
        stored = Execution.objects.get(pk=response.json()["execution_id"])
    assert stored.requested_model == "gpt-other" and stored.options["model"] == "gpt-other"
    assert llm_agent.agent.model != "gpt-other"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"context": "not an object"}, "context"),
        ({"context": [1, 2]}, "context"),
        ({"input": {"message": 42}}, "input.message"),
        ({"input": {"parameters": {"temperature": 3}}}, "input.parameters.temperature"),
        ({"input": {"parameters": {"temperature": "0.5"}}}, "input.parameters.temperature"),
        ({"input": {"parameters": {"max_tokens": 10_000_000}}}, "input.parameters.max_tokens"),
        ({"input": {"parameters": {"seed": 1}}}, "input.parameters.seed"),
        ({"execution_config": {"timeout_seconds": 0}}, "execution_config.timeout_seconds"),
        ({"execution_config": {"timeout_seconds": 10**6}}, "execution_config.timeout_seconds"),
        (
            {"execution_config": {"retry_config": {"max_attempts": 0}}},
            "execution_config.retry_config.max_attempts",
        ),
        (
            {"execution_config": {"retry_config": {"retry_on_errors": ["bogus"]}}},
            "execution_config.retry_config.retry_on_errors.0",
        ),
        ({"execution_config": {"mode": "later"}}, "execution_config.mode"),
        ({"execution_config": {"model": ""}}, "execution_config.model"),
        ({"execution_config": {"model": 4}}, "execution_config.model"),
        ({"execution_config": {"model": "cb:nonsense"}}, "execution_config.model"),
        ({"status": "completed"}, "status"),
        ({"cost": "0"}, "cost"),
        # reliability case 14: provider settings smuggled in anywhere
        ({"base_url": "http://169.254.169.254"}, "base_url"),
        ({"execution_config": {"api_base": "http://x"}}, "execution_config.api_base"),
        ({"input": {"parameters": {"api_key": "k"}}}, "input.parameters.api_key"),
        ({"context": {"deep": [{"Headers": {"x": "y"}}]}}, "context.deep[0].Headers"),
        ({"provider": "openai"}, "provider"),
        ({"execution_config": {"endpoint": "http://x"}}, "execution_config.endpoint"),
    ],
)
def test_invalid_bodies_are_400_naming_the_field(api, llm_agent, fake_llm, body, field):
    response = api(llm_agent.persona.user_key).post(f"/agents/{llm_agent.agent.id}/execute", body)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["message"].startswith(f"{field}:"), error
    assert fake_llm.requests(llm_agent.key) == []
    with schema_context(llm_agent.persona.schema):
        assert not Execution.objects.exists()


def test_input_schema_is_enforced_before_running(api, make_llm_agent, alpha, fake_llm):
    made = make_llm_agent(
        alpha,
        input_schema={
            "type": "object",
            "properties": {"message": {"type": "string", "maxLength": 5}},
            "required": ["message"],
        },
    )
    response = api(alpha.user_key).post(
        f"/agents/{made.agent.id}/execute", {"input": {"message": "far too long"}}
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("input:")
    assert fake_llm.requests(made.key) == []
    with schema_context(alpha.schema):
        assert not Execution.objects.exists()


def test_background_mode_queues_a_job_and_cancel_ends_it(api, llm_agent):
    client = api(llm_agent.persona.user_key)
    response = client.post(
        f"/agents/{llm_agent.agent.id}/execute",
        {"input": {"message": "later"}, "execution_config": {"mode": "background"}},
    )
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert response["Location"] == f"/agents/{llm_agent.agent.id}/executions/{body['execution_id']}"
    job = ProcrastinateJob.objects.filter(task_name="agents.run_execution").latest("id")
    assert job.args == {
        "schema_name": llm_agent.persona.schema,
        "execution_id": body["execution_id"],
    }
    detail = client.get(response["Location"]).json()
    assert detail["status"] == "queued" and detail["attempts"] == []
    assert isinstance(detail["queue_position"], int) and detail["queue_position"] >= 1

    cancelled = client.post(f"/executions/{body['execution_id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["cancel_requested"]
    again = client.post(f"/executions/{body['execution_id']}/cancel")
    assert again.status_code == 200 and again.json()["cancel_requested"] is False


def test_detail_lists_attempts_usage_and_timestamps(api, llm_agent, fake_llm):
    fake_llm.script(llm_agent.key, {"reply": "done"})
    client = api(llm_agent.persona.user_key)
    execution_id = client.post(
        f"/agents/{llm_agent.agent.id}/execute", {"input": {"message": "go"}}
    ).json()["execution_id"]
    detail = client.get(f"/agents/{llm_agent.agent.slug}/executions/{execution_id}").json()
    assert detail["status"] == "completed" and len(detail["attempts"]) == 1
    assert detail["completed_at"] and detail["duration_ms"] is not None
    assert detail["usage"]["output_tokens"] > 0 and detail["parent_id"] is None
    assert client.get(f"/executions/{execution_id}").json()["execution_id"] == execution_id


def _stored(persona, agent, **context):
    return store_queued(persona.schema, agent, context=context)


def test_list_filters_and_pagination(api, llm_agent, make_llm_agent):
    alpha = llm_agent.persona
    agent = llm_agent.agent
    first = _stored(alpha, agent, user_context={"user_id": "u1"}, resource_id="r1")
    _stored(alpha, agent, user_context={"user_id": "u2"}, workflow_context={"resource_id": "r2"})
    third = _stored(alpha, agent, user_context={"user_id": "u1"})
    with schema_context(alpha.schema):
        Execution.objects.filter(pk=third.pk).update(status=ExecutionStatus.FAILED)
    other = make_llm_agent(alpha, slug="other-agent")
    _stored(alpha, other.agent)
    client = api(alpha.readonly_key)
    base = f"/agents/{agent.id}/executions"

    page = client.get(base).json()
    assert page["total"] == 3 and page["page"] == 1 and page["page_size"] == 20
    by_user = client.get(base, **{"context.user_context.user_id": "u1"}).json()
    assert {e["execution_id"] for e in by_user["executions"]} == {first.id, third.id}
    failed = client.get(base, status="failed").json()
    assert [e["execution_id"] for e in failed["executions"]] == [third.id]
    assert client.get(base, resource_id="r2").json()["total"] == 1
    assert client.get(base, resource_id="r1").json()["executions"][0]["execution_id"] == first.id
    paged = client.get(base, limit=2, offset=2).json()
    assert paged["total"] == 3 and len(paged["executions"]) == 1 and paged["page"] == 2
    for bad in ({"limit": 500}, {"limit": "x"}, {"offset": -1}, {"status": "weird"}, {"foo": 1}):
        assert client.get(base, **bad).status_code == 400, bad

    everything = client.get("/executions").json()
    assert everything["total"] == 4
    assert client.get("/executions", agent_id="other-agent").json()["total"] == 1
    assert client.get("/executions", agent_id="no-such-agent").json()["total"] == 0


def test_readonly_cannot_execute_or_cancel(api, llm_agent, fake_llm):
    alpha = llm_agent.persona
    queued = _stored(alpha, llm_agent.agent)
    client = api(alpha.readonly_key)
    assert client.post(f"/agents/{llm_agent.agent.id}/execute", {}).status_code == 403
    response = client.post(f"/agents/{llm_agent.agent.id}/execute/stream", {})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert client.post(f"/executions/{queued.id}/cancel").status_code == 403
    assert client.get(f"/agents/{llm_agent.agent.id}/executions").status_code == 200
    assert fake_llm.requests(llm_agent.key) == []
    with schema_context(alpha.schema):
        denied = AuditLog.objects.filter(action="permission.denied")
        assert {e.details["permission"] for e in denied} == {
            "executions.run",
            "executions.cancel",
        }
        assert Execution.objects.get(pk=queued.pk).status == "queued"


@pytest.mark.parametrize("suffix", ["execute", "execute/stream"])
def test_oversized_body_is_413(alpha, llm_agent, settings, suffix):
    body = json.dumps({"input": {"message": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)}})
    response = Client().post(
        f"/agents/{llm_agent.agent.id}/{suffix}",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {alpha.user_key}",
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_stream_endpoint_validates_before_streaming(api, llm_agent, fake_llm):
    client = api(llm_agent.persona.user_key)
    response = client.post(
        f"/agents/{llm_agent.agent.id}/execute/stream", {"context": {"api_base": "http://x"}}
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("context.api_base:")
    response = client.post(
        f"/agents/{llm_agent.agent.id}/execute/stream", {"input": {"message": 1}}
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("input.message:")
    missing = client.post("/agents/nope/execute/stream", {})
    assert missing.status_code == 404
    assert fake_llm.requests(llm_agent.key) == []


def test_stream_endpoints_answer_wrong_methods_and_media_types_in_json(api, llm_agent):
    client = api(llm_agent.persona.user_key)
    wrong = client.get(f"/agents/{llm_agent.agent.id}/execute/stream")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    form = client.client.post(
        f"/agents/{llm_agent.agent.id}/execute/stream",
        "a=b",
        content_type="application/x-www-form-urlencoded",
        **client._headers({}),
    )
    assert form.status_code == 415
    broken = client.client.post(
        f"/agents/{llm_agent.agent.id}/execute/stream",
        "{nope",
        content_type="application/json",
        **client._headers({}),
    )
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "parse_error"
    assert api(None).post(f"/agents/{llm_agent.agent.id}/execute/stream", {}).status_code == 401
