"""Secrets in HTTP tool headers are write-only, like provider keys: sealed in the agent row and
in every version, shown as a mask everywhere, kept when the mask comes back, and still sent to
the tool's URL when the agent runs."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django_tenants.utils import schema_context

from agents.crypto import field_key_ring, parse_key_ring
from agents.models import Agent, AgentVersion
from agents.services.tool_secrets import (
    MASK,
    mask_config_secrets,
    open_tool_secrets,
    seal_tool_secrets,
)
from tests.agents.conftest import make_credential
from tests.agents.test_admin import client_for, form_errors, make_operator, read_form, url


def canary() -> str:
    return f"tool-secret-{uuid.uuid4().hex}"


def patch(client: Any, path: str, body: Any) -> Any:
    return client.client.patch(
        path, json.dumps(body), content_type="application/json", **client._headers({})
    )


def lookup_tool(fake_url: str, secret: str, **config: Any) -> dict[str, Any]:
    """An HTTP tool aimed at the fake LLM server, which logs each request under the bearer
    token it carries: the test reads there what the tool really sent."""
    return {
        "name": "lookup",
        "kind": "http",
        "description": "looks things up",
        "parameters": {"type": "object"},
        "config": {
            "url": f"{fake_url}/v1/chat/completions",
            "headers": {"Authorization": f"Bearer {secret}", "X-Plain": "not-secret-either"},
            **config,
        },
    }


def script_tool_call(fake_llm: Any, provider_key: str) -> None:
    # The tool's arguments are a chat request, so the fake server answers the tool too.
    arguments = {"model": "fake-model", "messages": [{"role": "user", "content": "q"}]}
    fake_llm.script(
        provider_key,
        {"tool_calls": [{"name": "lookup", "arguments": arguments}]},
        {"reply": "looked it up"},
    )


@pytest.fixture
def provider(alpha, fake_llm, settings) -> tuple[Any, str]:
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]  # the fake LLM (and the tool) listen there
    key = f"sk-test-{uuid.uuid4().hex}"
    with schema_context(alpha.schema):
        credential = make_credential(kind="openai", base_url=f"{fake_llm.url}/v1", api_key=key)
    return credential, key


def create_agent(api, alpha, fake_llm, credential, secret: str) -> dict[str, Any]:
    response = api(alpha.admin_key).post(
        "/agents",
        {
            "slug": f"tooled-{uuid.uuid4().hex[:6]}",
            "name": "Tooled",
            "credential": credential.name,
            "model": "fake-model",
            "retry_backoff_seconds": 0,
            "tools": [lookup_tool(fake_llm.url, secret)],
        },
    )
    assert response.status_code == 201, response.json()
    return response.json()


def run_and_check_the_tool_got(api, alpha, fake_llm, provider_key, agent_id, secret) -> None:
    """Run the agent (it calls its tool once) and check the tool's request carried
    ``Authorization: Bearer <secret>``: the fake server files requests under their bearer token
    (and keeps no copy of the header itself)."""
    script_tool_call(fake_llm, provider_key)
    response = api(alpha.user_key).post(f"/agents/{agent_id}/execute", {"input": {"message": "x"}})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "completed" and body["output"] == "looked it up", body
    (sent,) = fake_llm.requests(secret)
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["x-plain"] == "not-secret-either"


def raw_rows(schema: str, agent_id: str) -> str:
    with schema_context(schema), connection.cursor() as cursor:
        cursor.execute(
            "SELECT row_to_json(a)::text FROM agents_agent a WHERE id = %s "
            "UNION ALL SELECT row_to_json(v)::text FROM agents_agentversion v WHERE agent_id = %s",
            [agent_id, agent_id],
        )
        return "\n".join(row for (row,) in cursor.fetchall())


def stored_tools(schema: str, agent_id: str) -> list[dict[str, Any]]:
    with schema_context(schema):
        return Agent.objects.get(pk=agent_id).tools


# ---- write-only over REST, sealed at rest, opened for the engine ----


def test_canary_never_leaves_the_platform_except_towards_the_tool(api, alpha, fake_llm, provider):
    credential, provider_key = provider
    secret = canary()
    created = create_agent(api, alpha, fake_llm, credential, secret)
    agent_id = created["id"]
    admin = api(alpha.admin_key)

    headers = created["tools"][0]["config"]["headers"]
    assert headers == {"Authorization": MASK, "X-Plain": MASK}
    responses = [
        json.dumps(created),
        admin.get(f"/agents/{agent_id}").content.decode(),
        admin.get("/agents").content.decode(),
        admin.get(f"/agents/{agent_id}/versions").content.decode(),
    ]
    assert all(secret not in text for text in responses)

    rows = raw_rows(alpha.schema, agent_id)
    assert rows.count('"sealed"') >= 4  # two headers, in the agent row and in version 1
    assert secret not in rows and "not-secret-either" not in rows

    run_and_check_the_tool_got(api, alpha, fake_llm, provider_key, agent_id, secret)
    with schema_context(alpha.schema):
        records = json.dumps(
            [
                admin.get(f"/agents/{agent_id}/executions").json(),
                list(AgentVersion.objects.filter(agent_id=agent_id).values("config")),
            ],
            default=str,
        )
    assert secret not in records


def test_sending_the_mask_back_or_leaving_headers_out_keeps_the_secret(
    api, alpha, fake_llm, provider
):
    credential, provider_key = provider
    secret = canary()
    created = create_agent(api, alpha, fake_llm, credential, secret)
    agent_id, admin = created["id"], api(alpha.admin_key)
    sealed = stored_tools(alpha.schema, agent_id)

    # The agent as read, sent back unchanged: nothing changed, so no new version.
    response = patch(admin, f"/agents/{agent_id}", {"tools": created["tools"]})
    assert response.status_code == 200 and response.json()["version"] == 1
    assert stored_tools(alpha.schema, agent_id) == sealed

    # The mask with another change; then headers left out altogether.
    tools = created["tools"]
    tools[0]["description"] = "looks things up, politely"
    response = patch(admin, f"/agents/{agent_id}", {"tools": tools})
    assert response.status_code == 200 and response.json()["version"] == 2
    del tools[0]["config"]["headers"]
    tools[0]["description"] = "looks things up, quietly"
    response = patch(admin, f"/agents/{agent_id}", {"tools": tools})
    assert response.status_code == 200 and response.json()["version"] == 3
    assert response.json()["tools"][0]["config"]["headers"] == {
        "Authorization": MASK,
        "X-Plain": MASK,
    }
    assert (
        stored_tools(alpha.schema, agent_id)[0]["config"]["headers"]
        == (sealed[0]["config"]["headers"])
    )
    run_and_check_the_tool_got(api, alpha, fake_llm, provider_key, agent_id, secret)


def test_a_new_value_replaces_the_stored_one(api, alpha, fake_llm, provider):
    credential, provider_key = provider
    old, new = canary(), canary()
    created = create_agent(api, alpha, fake_llm, credential, old)
    agent_id = created["id"]
    tools = created["tools"]
    tools[0]["config"]["headers"]["Authorization"] = f"Bearer {new}"
    response = patch(api(alpha.admin_key), f"/agents/{agent_id}", {"tools": tools})
    assert response.status_code == 200 and new not in response.content.decode()
    assert new not in raw_rows(alpha.schema, agent_id)
    run_and_check_the_tool_got(api, alpha, fake_llm, provider_key, agent_id, new)
    assert fake_llm.requests(old) == []


def test_a_kept_secret_does_not_follow_the_tool_to_another_host(api, alpha, fake_llm, provider):
    credential, _ = provider
    created = create_agent(api, alpha, fake_llm, credential, canary())
    agent_id, admin = created["id"], api(alpha.admin_key)
    sealed = stored_tools(alpha.schema, agent_id)
    tools = created["tools"]
    tools[0]["config"]["url"] = "https://collector.example/v1/chat/completions"
    response = patch(admin, f"/agents/{agent_id}", {"tools": tools})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"].startswith("tools[0].config.headers.")  # names the header
    assert "another host" in error["message"]
    del tools[0]["config"]["headers"]
    response = patch(admin, f"/agents/{agent_id}", {"tools": tools})
    assert response.status_code == 400 and "another host" in response.json()["error"]["message"]
    assert stored_tools(alpha.schema, agent_id) == sealed

    # With the values entered again, the move is fine; a path change on the same host keeps them.
    tools[0]["config"]["headers"] = {"Authorization": "Bearer for-the-new-host"}
    assert patch(admin, f"/agents/{agent_id}", {"tools": tools}).status_code == 200
    tools[0]["config"]["headers"] = {"Authorization": MASK}
    tools[0]["config"]["url"] = "https://collector.example/other/path"
    assert patch(admin, f"/agents/{agent_id}", {"tools": tools}).status_code == 200


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-New": MASK}, "keeps a stored value, and none is stored"),
        ({"X-Number": 5}, "must be a single-line string"),
        ({"X-Sealed": {"sealed": "test-new$gAAAA"}}, "must be a single-line string"),
        ({"X-Split": "a\r\nInjected: 1"}, "must be a single-line string"),
        ({"Bad Name": "v"}, "is not a valid header name"),
    ],
)
def test_header_values_are_checked_and_never_taken_as_sealed(
    api, alpha, fake_llm, provider, headers, message
):
    credential, _ = provider
    tool = lookup_tool(fake_llm.url, "unused")
    tool["config"]["headers"] = headers
    response = api(alpha.admin_key).post(
        "/agents",
        {"slug": "bad-headers", "name": "Bad", "credential": credential.name, "model": "m"},
    )
    assert response.status_code == 201
    response = patch(api(alpha.admin_key), "/agents/bad-headers", {"tools": [tool]})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("tools[0].config.headers")
    assert message in response.json()["error"]["message"]


# ---- the admin ----


def test_admin_change_page_shows_the_mask_and_saving_it_keeps_the_secret(
    api, alpha, fake_llm, provider
):
    credential, provider_key = provider
    secret = canary()
    agent_id = create_agent(api, alpha, fake_llm, credential, secret)["id"]
    browser = client_for(make_operator(alpha.schema), alpha.schema, alpha.host)
    change = browser.get(url("agents_agent_change", agent_id))
    html = change.content.decode()
    assert change.status_code == 200 and secret not in html
    sealed = stored_tools(alpha.schema, agent_id)
    assert sealed[0]["config"]["headers"]["Authorization"]["sealed"] not in html
    form = read_form(change, "agent_form")
    assert json.loads(form["tools"])[0]["config"]["headers"]["Authorization"] == MASK

    form["description"] = "edited in the admin"
    response = browser.post(url("agents_agent_change", agent_id), form)
    assert response.status_code == 302, form_errors(response)
    assert (
        stored_tools(alpha.schema, agent_id)[0]["config"]["headers"]
        == (sealed[0]["config"]["headers"])
    )
    run_and_check_the_tool_got(api, alpha, fake_llm, provider_key, agent_id, secret)

    # A mask for a header that was never stored is a form error, not a failed save.
    form = read_form(browser.get(url("agents_agent_change", agent_id)), "agent_form")
    tools = json.loads(form["tools"])
    tools[0]["config"]["headers"]["X-Other"] = MASK
    form["tools"] = json.dumps(tools)
    response = browser.post(url("agents_agent_change", agent_id), form)
    assert response.status_code == 200
    assert "none is stored" in " ".join(form_errors(response)["tools"])


# ---- key rotation and values stored before sealing ----


def test_reencrypt_seals_old_key_and_clear_text_values_of_agents_and_versions(
    api, alpha, fake_llm, provider, settings
):
    credential, _ = provider
    secret = canary()
    agent_id = create_agent(api, alpha, fake_llm, credential, secret)["id"]
    old_only = parse_key_ring(settings.FIELD_ENCRYPTION_KEYS.split(",")[1])
    with schema_context(alpha.schema):
        # Sealed with the old key in the agent row; clear text (as stored before sealing) in v1.
        tools = Agent.objects.get(pk=agent_id).tools
        tools[0]["config"]["headers"]["Authorization"] = {"sealed": old_only.encrypt(secret)}
        Agent.objects.filter(pk=agent_id).update(tools=tools)
        version = AgentVersion.objects.get(agent_id=agent_id, version=1)
        config = version.config
        config["tools"][0]["config"]["headers"]["Authorization"] = f"Bearer {secret}"
        AgentVersion.objects.filter(pk=version.pk).update(config=config)
        assert open_tool_secrets(tools)[0]["config"]["headers"]["Authorization"] == secret

    out = io.StringIO()
    call_command("reencrypt_secrets", stdout=out)
    assert "alpha: tool secrets of 2 agent(s) or version(s)" in out.getvalue()
    assert secret not in raw_rows(alpha.schema, agent_id)
    active = f"{field_key_ring().active_kid}$"
    with schema_context(alpha.schema):
        stored = [Agent.objects.get(pk=agent_id).tools]
        stored += [v.config["tools"] for v in AgentVersion.objects.filter(agent_id=agent_id)]
    for tools in stored:
        for value in tools[0]["config"]["headers"].values():
            assert value["sealed"].startswith(active)
    opened = open_tool_secrets(stored[0])[0]["config"]["headers"]
    assert opened["Authorization"] == secret and opened["X-Plain"] == "not-secret-either"
    opened = open_tool_secrets(stored[1])[0]["config"]["headers"]
    assert opened["Authorization"] == f"Bearer {secret}"


# ---- the pieces other interfaces use ----


def test_masking_a_version_config_and_sealing_leave_their_input_alone():
    tools = [lookup_tool("https://api.example", "s3cret")]
    before = json.dumps(tools)
    sealed = seal_tool_secrets(tools, stored=[])
    assert json.dumps(tools) == before and "s3cret" not in json.dumps(sealed)
    config = {"slug": "x", "tools": sealed}
    masked = mask_config_secrets(config)
    assert masked["tools"][0]["config"]["headers"] == {"Authorization": MASK, "X-Plain": MASK}
    assert config["tools"] is sealed and "sealed" in json.dumps(config)
    opened = open_tool_secrets(sealed)
    assert opened[0]["config"]["headers"]["Authorization"] == "Bearer s3cret"
    assert "s3cret" not in json.dumps(sealed)


def test_migration_seals_headers_stored_in_clear_before_sealing(api, alpha, fake_llm, provider):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("agents.migrations.0005_seal_tool_header_secrets")
    credential, _ = provider
    secret = canary()
    agent_id = create_agent(api, alpha, fake_llm, credential, secret)["id"]
    clear = [lookup_tool(fake_llm.url, secret)]  # what an agent saved before sealing holds
    with schema_context(alpha.schema):
        Agent.objects.filter(pk=agent_id).update(tools=clear)
        version = AgentVersion.objects.get(agent_id=agent_id, version=1)
        AgentVersion.objects.filter(pk=version.pk).update(config={**version.config, "tools": clear})
        assert secret in raw_rows(alpha.schema, agent_id)
        migration.seal_clear_text_headers(apps, None)
    assert secret not in raw_rows(alpha.schema, agent_id)
    opened = open_tool_secrets(stored_tools(alpha.schema, agent_id))
    assert opened[0]["config"]["headers"]["Authorization"] == f"Bearer {secret}"
