"""Reliability case 15: a canary provider key, saved over the API of a live server, never
appears anywhere but in the upstream request's Authorization header: not in any answer
(credential CRUD, agent, executions, streams, errors, usage, audit log, workflow export), not
in stored rows (executions, events, audit entries, versions), not in the prompts the provider
receives, not in the server's log, even when the provider's error message quotes the key (as
OpenAI's "Incorrect API key provided: sk-..." does)."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
from django_tenants.utils import schema_context

from agents.models import AgentVersion, Execution, ExecutionEvent, ProviderCredential
from tenants.audit.models import AuditLog
from tests.conftest import live_env, spawn_server
from tests.workflow_bridge.test_cascade import review_flow


def _stored_text(schema: str) -> str:
    """Every stored row a run or a change leaves, as text (the sealed key column excepted)."""
    with schema_context(schema):
        rows: list[Any] = [
            *Execution.objects.values(),
            *ExecutionEvent.objects.values(),
            *AuditLog.objects.values(),
            *AgentVersion.objects.values(),
            *ProviderCredential.objects.values("id", "name", "kind", "base_url"),
        ]
    return json.dumps(rows, default=str)


def test_a_canary_key_never_leaves_the_upstream_request(committed_personas, fake_llm, tmp_path):
    alpha = committed_personas["alpha"]
    canary = f"sk-canary-{secrets.token_hex(16)}"
    fake_llm.script(
        canary,
        {"reply": "first answer"},
        {"reply": "streamed answer", "chunks": 3},
        {"status": 401, "message": f"Incorrect API key provided: {canary}"},
        {"status": 401, "message": f"Incorrect API key provided: {canary}"},
    )
    log_path = tmp_path / "web.log"
    answers: list[str] = []
    with log_path.open("wb") as log:
        proc, url = spawn_server(live_env(LOG_LEVEL="DEBUG"), log, log_path)
        try:
            with httpx.Client(
                base_url=url, timeout=20, headers={"Authorization": f"Bearer {alpha.admin_key}"}
            ) as client:

                def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
                    response = client.request(method, path, **kwargs)
                    answers.append(f"{method} {path} {response.status_code} {response.text}")
                    assert response.status_code < 500, answers[-1]
                    return response

                credential = call(
                    "POST",
                    "/credentials",
                    json={
                        "name": "canary-cred",
                        "kind": "openai",
                        "base_url": fake_llm.base_url("openai"),
                        "api_key": canary,
                    },
                )
                assert credential.status_code == 201, credential.text
                credential_id = credential.json()["id"]
                agent = call(
                    "POST",
                    "/agents",
                    json={
                        "slug": "canary-agent",
                        "name": "Canary",
                        "credential": "canary-cred",
                        "model": "fake-model",
                        "retry_max_attempts": 1,
                    },
                ).json()
                ok = call("POST", "/agents/canary-agent/execute", json={"input": {"message": "hi"}})
                assert ok.status_code == 200 and ok.json()["status"] == "completed", ok.text
                stream = call(
                    "POST", "/agents/canary-agent/execute/stream", json={"input": {"message": "s"}}
                )
                assert "streamed" in stream.text and "[DONE]" in stream.text
                failed = call(
                    "POST", "/agents/canary-agent/execute", json={"input": {"message": "x"}}
                )
                assert failed.json()["status"] == "failed", failed.text
                tested = call("POST", f"/credentials/{credential_id}/test", json={})
                assert tested.status_code in (200, 400, 502), tested.text
                failed_id = failed.json()["execution_id"]
                for path in (
                    "/credentials",
                    f"/credentials/{credential_id}",
                    f"/agents/{agent['id']}",
                    f"/agents/{agent['id']}/versions",
                    f"/agents/{agent['id']}/executions",
                    f"/agents/{agent['id']}/executions/{failed_id}",
                    f"/agents/{agent['id']}/executions/{failed_id}/stream",
                    f"/executions/{failed_id}",
                    "/executions",
                    "/usage",
                    "/audit-log",
                    "/models",
                ):
                    call("GET", path)
                flow = call("POST", "/workflows", json=review_flow("canary-flow")).json()
                call("GET", f"/workflows/{flow['id']}")
                call(
                    "PATCH", f"/credentials/{credential_id}", json={"api_key": f"{canary}-rotated"}
                )
        finally:
            proc.terminate()
            proc.wait(10)
    server_log = log_path.read_text(errors="replace")
    assert "execution ended" in server_log or "POST /agents" in server_log  # the log was written
    upstream = fake_llm.requests(canary)
    assert len(upstream) >= 3
    leaks = {
        "answers": [a[:200] for a in answers if canary in a],
        "stored rows": canary in _stored_text(alpha.schema),
        "prompts sent upstream": [r["path"] for r in upstream if canary in json.dumps(r)],
        "server log": [line[:200] for line in server_log.splitlines() if canary in line],
    }
    assert leaks == {
        "answers": [],
        "stored rows": False,
        "prompts sent upstream": [],
        "server log": [],
    }, leaks
    # The failure is still explained, with the key cut out.
    assert "Incorrect API key provided" in failed.text
