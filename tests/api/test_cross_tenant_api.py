"""Reliability cases 1 and 2: bravo's credentials on alpha's agents and executions."""

from __future__ import annotations

import json

from django_tenants.utils import schema_context

from agents.models import Agent, Execution
from tests.api.conftest import patch
from tests.runs import store_queued


def test_bravo_gets_404_on_every_alpha_url_and_changes_nothing(api, llm_agent, bravo, fake_llm):
    alpha = llm_agent.persona
    agent = llm_agent.agent
    with schema_context(alpha.schema):
        execution = store_queued(alpha.schema, agent, context={"secret": "alpha-only"})
    client = api(bravo.admin_key)
    execute_body = {"input": {"message": "hi"}}
    for ref in (agent.id, agent.slug):
        calls = [
            client.get(f"/agents/{ref}"),
            patch(client, f"/agents/{ref}", {"name": "pwned"}),
            client.delete(f"/agents/{ref}"),
            client.get(f"/agents/{ref}/versions"),
            client.get(f"/agents/{ref}/stats"),
            client.post(f"/agents/{ref}/execute", execute_body),
            client.post(
                f"/agents/{ref}/execute",
                {**execute_body, "execution_config": {"mode": "background"}},
            ),
            client.post(f"/agents/{ref}/execute/stream", execute_body),
            client.get(f"/agents/{ref}/executions"),
            client.get(f"/agents/{ref}/executions/{execution.id}"),
            client.get(f"/agents/{ref}/executions/{execution.id}/stream"),
        ]
        for response in calls:
            assert response.status_code == 404, (response.request, response.content)
            assert "alpha-only" not in response.content.decode()
    for response in (
        client.get(f"/executions/{execution.id}"),
        client.post(f"/executions/{execution.id}/cancel"),
    ):
        assert response.status_code == 404
    listed = client.get("/executions", agent_id=agent.id).json()
    assert listed["total"] == 0 and listed["executions"] == []
    assert client.get("/executions").json()["total"] == 0
    assert "alpha-only" not in json.dumps(
        client.get("/executions", **{"context.secret": "alpha-only"}).json()
    )
    assert client.get("/agents").json()["agents"] == []

    with schema_context(alpha.schema):
        unchanged = Agent.objects.get(pk=agent.pk)
        assert unchanged.name == agent.name and unchanged.enabled and unchanged.version == 1
        stored = Execution.objects.get(pk=execution.pk)
        assert stored.status == "queued" and stored.cancel_requested_at is None
        assert Execution.objects.count() == 1
    with schema_context(bravo.schema):
        assert not Execution.objects.exists()
    assert fake_llm.requests(llm_agent.key) == []


def test_an_agent_of_one_tenant_never_shadows_the_other(api, make_llm_agent, alpha, bravo):
    mine = make_llm_agent(alpha, slug="same-slug")
    theirs = make_llm_agent(bravo, slug="same-slug")
    assert api(alpha.user_key).get("/agents/same-slug").json()["id"] == mine.agent.id
    assert api(bravo.user_key).get("/agents/same-slug").json()["id"] == theirs.agent.id
