"""Idempotency-Key on execute (Django test client; the concurrent case is in test_live_api)."""

from __future__ import annotations

import uuid

from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import Execution, IdempotencyRecord
from agents.services.idempotency import request_fingerprint


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"key-{uuid.uuid4().hex}"}


def test_same_key_replays_the_first_response_and_runs_once(api, llm_agent, fake_llm):
    fake_llm.script(llm_agent.key, {"reply": "first answer"}, {"reply": "second answer"})
    client = api(llm_agent.persona.user_key)
    path = f"/agents/{llm_agent.agent.id}/execute"
    body = {"input": {"message": "once"}, "context": {"b": 1, "a": 2}}
    key = _key()
    first = client.post(path, body, headers=key)
    # same body, keys in another order: the same request
    second = client.post(path, {"context": {"a": 2, "b": 1}, "input": {"message": "once"}}, key)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json() and second.json()["output"] == "first answer"
    assert second["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")
    assert len(fake_llm.requests(llm_agent.key)) == 1
    with schema_context(llm_agent.persona.schema):
        assert Execution.objects.count() == 1


def test_same_key_with_another_body_is_409(api, llm_agent, fake_llm):
    fake_llm.script(llm_agent.key, {"reply": "a"})
    client = api(llm_agent.persona.user_key)
    path = f"/agents/{llm_agent.agent.id}/execute"
    key = _key()
    assert client.post(path, {"input": {"message": "one"}}, key).status_code == 200
    response = client.post(path, {"input": {"message": "two"}}, key)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert len(fake_llm.requests(llm_agent.key)) == 1


def test_errors_are_stored_and_replayed(api, llm_agent, fake_llm):
    client = api(llm_agent.persona.user_key)
    path = f"/agents/{llm_agent.agent.id}/execute"
    key = _key()
    first = client.post(path, {"input": {"message": 5}}, key)
    again = client.post(path, {"input": {"message": 5}}, key)
    assert first.status_code == again.status_code == 400
    assert again.json()["error"] == first.json()["error"]
    assert again["Idempotent-Replayed"] == "true"


def test_keys_are_scoped_to_the_credential_and_the_tenant(
    api, llm_agent, make_llm_agent, bravo, fake_llm
):
    fake_llm.script(llm_agent.key, {"reply": "for user"}, {"reply": "for admin"})
    path = f"/agents/{llm_agent.agent.id}/execute"
    key = _key()
    body = {"input": {"message": "hi"}}
    as_user = api(llm_agent.persona.user_key).post(path, body, key)
    as_admin = api(llm_agent.persona.admin_key).post(path, body, key)
    assert as_user.json()["execution_id"] != as_admin.json()["execution_id"]
    assert not as_admin.has_header("Idempotent-Replayed")
    other = make_llm_agent(bravo)
    fake_llm.script(other.key, {"reply": "bravo"})
    in_bravo = api(bravo.user_key).post(f"/agents/{other.agent.id}/execute", body, key)
    assert in_bravo.status_code == 200 and in_bravo.json()["output"] == "bravo"


def test_background_runs_are_idempotent_too(api, llm_agent):
    client = api(llm_agent.persona.user_key)
    path = f"/agents/{llm_agent.agent.id}/execute"
    body = {"input": {"message": "later"}, "execution_config": {"mode": "background"}}
    key = _key()
    first = client.post(path, body, key)
    second = client.post(path, body, key)
    assert first.status_code == second.status_code == 202
    assert second["Location"] == first["Location"]
    assert second.json()["execution_id"] == first.json()["execution_id"]
    with schema_context(llm_agent.persona.schema):
        assert Execution.objects.count() == 1


def test_a_repeat_while_the_first_still_runs_is_409_in_progress(api, llm_agent, settings, fake_llm):
    settings.IDEMPOTENCY_WAIT_SECONDS = 0.2
    principal_key = llm_agent.persona.user_key
    path = f"/agents/{llm_agent.agent.id}/execute"
    body = {"input": {"message": "slow"}}
    client = api(principal_key)
    whoami = client.get("/auth/whoami").json()
    from tenants.models import ApiKey

    api_key = ApiKey.objects.get(prefix=whoami["principal"].split(":", 1)[1])
    scope = f"api_key:{api_key.id}"
    key = f"key-{uuid.uuid4().hex}"
    with schema_context(llm_agent.persona.schema):
        IdempotencyRecord.objects.create(
            scope=scope,
            key=key,
            fingerprint=request_fingerprint(method="POST", path=path, body=body, scope=scope),
            method="POST",
            path=path,
            locked_until=timezone.now() + timezone.timedelta(minutes=5),
        )
    response = client.post(path, body, {"Idempotency-Key": key})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_progress"
    assert response["Retry-After"] == "1"
    assert fake_llm.requests(llm_agent.key) == []
    # The owner died: once its lease has passed, the next request takes the key over.
    with schema_context(llm_agent.persona.schema):
        IdempotencyRecord.objects.filter(key=key).update(
            locked_until=timezone.now() - timezone.timedelta(seconds=1)
        )
    fake_llm.script(llm_agent.key, {"reply": "taken over"})
    response = client.post(path, body, {"Idempotency-Key": key})
    assert response.status_code == 200 and response.json()["output"] == "taken over"


def test_malformed_key_is_400(api, llm_agent):
    response = api(llm_agent.persona.user_key).post(
        f"/agents/{llm_agent.agent.id}/execute", {}, {"Idempotency-Key": "x" * 300}
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Idempotency-Key:")


def test_keys_live_24_hours_then_may_be_reused(api, llm_agent, fake_llm):
    fake_llm.script(llm_agent.key, {"reply": "day one"}, {"reply": "day two"})
    client = api(llm_agent.persona.user_key)
    path = f"/agents/{llm_agent.agent.id}/execute"
    key = _key()
    first = client.post(path, {"input": {"message": "hi"}}, key)
    with schema_context(llm_agent.persona.schema):
        IdempotencyRecord.objects.update(
            created_at=timezone.now() - timezone.timedelta(hours=23, minutes=59)
        )
    assert client.post(path, {"input": {"message": "hi"}}, key).json() == first.json()
    with schema_context(llm_agent.persona.schema):
        IdempotencyRecord.objects.update(created_at=timezone.now() - timezone.timedelta(hours=25))
    fresh = client.post(path, {"input": {"message": "other body is fine now"}}, key)
    assert fresh.status_code == 200 and fresh.json()["output"] == "day two"
