"""/agents: CRUD, versions, stats, strict bodies, roles, and what DELETE does."""

from __future__ import annotations

import json

from django_tenants.utils import schema_context

from agents.models import Agent, AgentVersion
from tenants.audit.models import AuditLog
from tests.agents.conftest import make_credential
from tests.api.conftest import patch
from tests.runs import store_queued


def _credential(persona, **kwargs):
    with schema_context(persona.schema):
        return make_credential(kind="echo", **kwargs)


def _body(credential, **extra):
    return {
        "slug": "writer",
        "name": "Writer",
        "credential": credential.name,
        "model": "m1",
        **extra,
    }


def test_create_read_update_versions_and_stats(api, alpha):
    credential = _credential(alpha, api_key="sk-canary-secret-value")
    client = api(alpha.admin_key)
    created = client.post("/agents", _body(credential, system_prompt="Be brief."))
    assert created.status_code == 201, created.json()
    agent = created.json()
    assert agent["credential"] == credential.name and agent["version"] == 1
    assert created["Location"] == f"/agents/{agent['id']}"
    assert "sk-canary-secret-value" not in created.content.decode()

    assert client.get(f"/agents/{agent['id']}").json()["slug"] == "writer"
    assert client.get("/agents/writer").json()["id"] == agent["id"]
    listed = client.get("/agents").json()["agents"]
    assert [a["slug"] for a in listed] == ["writer"]

    changed = patch(client, "/agents/writer", {"temperature": 0.2, "name": "Writer 2"})
    assert changed.status_code == 200 and changed.json()["version"] == 2
    assert changed.json()["temperature"] == 0.2

    versions = client.get(f"/agents/{agent['id']}/versions").json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["config"]["credential"] == credential.name
    assert "sk-canary-secret-value" not in json.dumps(versions)

    stats = client.get("/agents/writer/stats").json()
    assert stats["total"] == 0 and stats["agent_id"] == agent["id"]


def test_create_refuses_unknown_and_platform_fields_naming_them(api, alpha):
    credential = _credential(alpha)
    client = api(alpha.admin_key)
    for field in ("tenant", "id", "version"):
        response = client.post("/agents", _body(credential, **{field: "x"}))
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith(f"{field}:")
        assert field in response.json()["error"]["details"]
    response = client.post("/agents", _body(credential, colour="red", flavour="x"))
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"colour", "flavour"}
    response = client.post("/agents", _body(credential, temperature=5))
    assert response.status_code == 400 and "temperature" in response.json()["error"]["message"]
    response = client.post("/agents", {**_body(credential), "credential": "nope"})
    assert response.status_code == 400 and "credential" in response.json()["error"]["message"]
    response = patch(client, "/agents/writer", {"version": 9})
    assert response.status_code in (400, 404)
    with schema_context(alpha.schema):
        assert not Agent.objects.exists()


def test_duplicate_slug_is_409(api, alpha):
    credential = _credential(alpha)
    client = api(alpha.admin_key)
    assert client.post("/agents", _body(credential)).status_code == 201
    response = client.post("/agents", _body(credential))
    assert response.status_code == 409


def test_delete_removes_an_agent_that_never_ran(api, alpha):
    credential = _credential(alpha)
    client = api(alpha.admin_key)
    agent_id = client.post("/agents", _body(credential)).json()["id"]
    response = client.delete(f"/agents/{agent_id}")
    assert response.status_code == 204
    assert client.get(f"/agents/{agent_id}").status_code == 404
    with schema_context(alpha.schema):
        assert not AgentVersion.objects.filter(agent_id=agent_id).exists()


def test_delete_disables_an_agent_with_executions(api, alpha):
    credential = _credential(alpha)
    client = api(alpha.admin_key)
    agent_id = client.post("/agents", _body(credential)).json()["id"]
    with schema_context(alpha.schema):
        store_queued(alpha.schema, Agent.objects.get(pk=agent_id))
    response = client.delete(f"/agents/{agent_id}")
    assert response.status_code == 200
    assert response.json()["enabled"] is False and response.json()["version"] == 2
    assert client.get(f"/agents/{agent_id}").json()["enabled"] is False
    refused = client.post(f"/agents/{agent_id}/execute", {"input": {"message": "hi"}})
    assert refused.status_code == 400 and "disabled" in refused.json()["error"]["message"]


def test_roles_readonly_and_user_cannot_write_agents(api, alpha):
    credential = _credential(alpha)
    assert api(alpha.admin_key).post("/agents", _body(credential)).status_code == 201
    for key in (alpha.readonly_key, alpha.user_key):
        client = api(key)
        assert client.get("/agents").status_code == 200
        assert client.get("/agents/writer").status_code == 200
        assert client.post("/agents", _body(credential, slug="other")).status_code == 403
        assert patch(client, "/agents/writer", {"name": "x"}).status_code == 403
        assert client.delete("/agents/writer").status_code == 403
    with schema_context(alpha.schema):
        assert (
            AuditLog.objects.filter(
                action="permission.denied", details__permission="agents.write"
            ).count()
            == 6
        )
        assert Agent.objects.get(slug="writer").name == "Writer"


def test_no_credential_is_401(api, alpha):
    response = api(None).get("/agents")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
