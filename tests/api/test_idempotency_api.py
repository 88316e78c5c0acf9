"""Idempotency-Key on execute (Django test client; the concurrent case is in test_live_api)."""

from __future__ import annotations

import uuid

from django.utils import timezone
from django_tenants.utils import schema_context

from agents.core.idempotency import body_fingerprint
from agents.models import Execution, ExecutionStatus, IdempotencyRecord
from tests.runs import store_queued


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


def _scope_of(client) -> str:
    from tenants.models import ApiKey

    whoami = client.get("/auth/whoami").json()
    api_key = ApiKey.objects.get(prefix=whoami["principal"].split(":", 1)[1])
    return f"api_key:{api_key.id}"


def test_a_repeat_waits_for_the_first_run_then_gets_409_in_progress(
    api, llm_agent, settings, fake_llm
):
    settings.IDEMPOTENCY_WAIT_SECONDS = 0.2
    path = f"/agents/{llm_agent.agent.id}/execute"
    body = {"input": {"message": "slow"}}
    client = api(llm_agent.persona.user_key)
    key = f"key-{uuid.uuid4().hex}"
    # The key's first request started this run, which is still going (elsewhere).
    first = store_queued(llm_agent.persona.schema, llm_agent.agent, message="slow")
    with schema_context(llm_agent.persona.schema):
        Execution.objects.filter(pk=first.pk).update(
            status=ExecutionStatus.RUNNING, started_at=timezone.now()
        )
        IdempotencyRecord.objects.create(
            scope=_scope_of(client),
            key=key,
            fingerprint=body_fingerprint(agent_ref=llm_agent.agent.id, mode=None, body=body),
            method="RUN",
            state="completed",
            execution_id=first.pk,
        )
    response = client.post(path, body, {"Idempotency-Key": key})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_progress"
    assert response["Retry-After"] == "1"
    assert fake_llm.requests(llm_agent.key) == []
    # Once that run has ended (here: its process died and the sweeper failed it), a repeat
    # gets its result: the key never starts a second run.
    with schema_context(llm_agent.persona.schema):
        Execution.objects.filter(pk=first.pk).update(
            status=ExecutionStatus.FAILED, error_code="worker_lost"
        )
    response = client.post(path, body, {"Idempotency-Key": key})
    assert response.status_code == 200 and response["Idempotent-Replayed"] == "true"
    assert response.json()["execution_id"] == first.pk
    assert response.json()["error_code"] == "worker_lost"
    assert fake_llm.requests(llm_agent.key) == []


def test_a_pending_key_of_an_older_release_is_taken_over_once_its_lease_passed(
    api, llm_agent, settings, fake_llm
):
    path = f"/agents/{llm_agent.agent.id}/execute"
    body = {"input": {"message": "hi"}}
    client = api(llm_agent.persona.user_key)
    key = f"key-{uuid.uuid4().hex}"
    with schema_context(llm_agent.persona.schema):
        IdempotencyRecord.objects.create(
            scope=_scope_of(client),
            key=key,
            fingerprint=body_fingerprint(agent_ref=llm_agent.agent.id, mode=None, body=body),
            method="POST",
            path=path,
            locked_until=timezone.now() + timezone.timedelta(minutes=5),
        )
    response = client.post(path, body, {"Idempotency-Key": key})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_progress"
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
