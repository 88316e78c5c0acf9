"""Reliability case 2: filters and references that name another tenant's objects find nothing.

Alpha owns an agent, a completed execution tied to a resource of its workflow, a credential and
a price. Bravo, with objects of its own, puts alpha's ids and slugs into every filter of every
list endpoint and into every body field that references another object: each answer is empty,
a 404 or a 400 naming the field, never a row of alpha, and nothing is stored anywhere."""

from __future__ import annotations

import json
from typing import Any

from django_tenants.utils import schema_context

from agents.models import Agent, Execution, ModelPrice
from tests.agents.conftest import make_agent, make_credential
from tests.conftest import ApiClient, Persona
from tests.runs import run
from tests.workflow_bridge.test_cascade import review_flow
from workflow_bridge.models import Resource, Workflow


def _alpha_world(alpha: Persona) -> dict[str, str]:
    admin = ApiClient(alpha.admin_key)
    with schema_context(alpha.schema):
        credential = make_credential(kind="echo", name="alpha-only-cred")
        agent = make_agent(credential, alpha.schema, slug="alpha-only-agent")
    workflow = admin.post("/workflows", review_flow("alpha-only-flow")).json()
    resource = admin.post(f"/workflows/{workflow['id']}/resources", {}).json()
    execution = run(
        alpha.schema,
        agent,
        message="alpha-only-message",
        context={"user_context": {"user_id": "alpha-only-user"}, "resource_id": resource["id"]},
    )
    assert execution.status == "completed", execution.error
    price = admin.post("/model-prices", {"model": "alpha-only-model"}).json()
    return {
        "agent_id": agent.id,
        "agent_slug": agent.slug,
        "credential": credential.name,
        "credential_id": str(credential.id),
        "workflow_id": workflow["id"],
        "resource_id": str(resource["id"]),
        "execution_id": execution.id,
        "price_id": str(price["id"]),
        "user_id": "alpha-only-user",
        "message": "alpha-only-message",
        "model": "alpha-only-model",
    }


def _assert_no_alpha(response: Any, world: dict[str, str], sent: Any = None) -> None:
    """No alpha value in the answer but those bravo itself sent (an error may quote them)."""
    text, quoted = response.content.decode(), json.dumps(sent or {})
    leaked = [
        value
        for value in world.values()
        if len(value) > 3 and value in text and value not in quoted  # ids like "2" are noise
    ]
    assert not leaked, (response.request["PATH_INFO"], leaked, text[:300])


def test_list_filters_with_alphas_ids_are_empty_for_bravo(api, alpha, bravo):
    world = _alpha_world(alpha)
    with schema_context(bravo.schema):
        bravo_agent = make_agent(make_credential(kind="echo"), bravo.schema, slug="bravo-agent")
    run(bravo.schema, bravo_agent, message="bravo's own")
    client = api(bravo.admin_key)
    bravo_flow = client.post("/workflows", review_flow("bravo-flow")).json()

    empty_lists = [
        ("/executions", {"agent_id": world["agent_id"]}),
        ("/executions", {"agent_id": world["agent_slug"]}),
        ("/executions", {"resource_id": world["resource_id"]}),
        ("/executions", {"context.user_context.user_id": world["user_id"]}),
        ("/executions", {"context.execution_id": world["execution_id"]}),
        (f"/agents/{bravo_agent.id}/executions", {"resource_id": world["resource_id"]}),
        (f"/workflows/{bravo_flow['id']}/resources", {}),
    ]
    for path, params in empty_lists:
        response = client.get(path, **params)
        assert response.status_code == 200, (path, params, response.content)
        body = response.json()
        rows = body.get("executions", body.get("resources"))
        assert rows == [] and body["total"] == 0, (path, params, body)
        _assert_no_alpha(response, world, params)

    not_found = [
        ("/usage", {"agent": world["agent_id"]}),
        ("/usage", {"agent": world["agent_slug"]}),
        (f"/resources/{world['resource_id']}/executions", {}),
        (f"/workflows/{world['workflow_id']}/resources", {}),
        (f"/agents/{world['agent_slug']}/executions", {"resource_id": world["resource_id"]}),
    ]
    for path, params in not_found:
        response = client.get(path, **params)
        assert response.status_code == 404, (path, params, response.content)
        _assert_no_alpha(response, world, [path, params])

    # Unfiltered lists and reports show bravo's rows only.
    for path in ("/agents", "/credentials", "/model-prices", "/workflows", "/executions"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.content)
        _assert_no_alpha(response, world)
    usage = client.get("/usage", group_by="agent").json()
    assert usage["totals"]["executions"] == 1, usage
    _assert_no_alpha(client.get("/usage", group_by="agent"), world)
    assert client.get("/executions").json()["total"] == 1


def test_references_to_alphas_objects_in_bravos_bodies_are_refused(api, alpha, bravo):
    world = _alpha_world(alpha)
    with schema_context(bravo.schema):
        make_agent(make_credential(kind="echo"), bravo.schema, slug="bravo-agent")
        counts = (Agent.objects.count(), ModelPrice.objects.count(), Execution.objects.count())
    client = api(bravo.admin_key)
    bravo_flow = client.post("/workflows", review_flow("bravo-flow")).json()
    flow = f"/workflows/{bravo_flow['id']}"
    refused = [
        ("/agents", {"slug": "x", "name": "X", "credential": world["credential"], "model": "m"}),
        ("/agents", {"slug": "y", "name": "Y", "credential": world["credential_id"], "model": "m"}),
        ("/model-prices", {"model": "m", "credential": world["credential"]}),
        ("/model-prices", {"model": "m", "credential": world["credential_id"]}),
        (f"{flow}/state-agents", {"place": "summarising", "agent": world["agent_slug"]}),
        (f"{flow}/state-agents", {"place": "summarising", "agent": world["agent_id"]}),
        (f"{flow}/activity-agents", {"activity": "submit", "agent": world["agent_id"]}),
    ]
    for path, body in refused:
        response = client.post(path, body)
        assert response.status_code in (400, 404), (path, body, response.content)
        _assert_no_alpha(response, world, body)
    # An agent-as-tool naming alpha's agent cannot be saved either.
    tool = {
        "name": "helper",
        "description": "Ask the helper",
        "kind": "agent",
        "agent": world["agent_slug"],
        "parameters": {"type": "object", "properties": {}},
    }
    response = client.post(
        "/agents",
        {"slug": "z", "name": "Z", "credential": "nope", "model": "m", "tools": [tool]},
    )
    assert response.status_code == 400
    _assert_no_alpha(response, world, tool)
    with schema_context(bravo.schema):
        assert (
            Agent.objects.count(),
            ModelPrice.objects.count(),
            Execution.objects.count(),
        ) == counts
        assert not Resource.objects.exists()
        assert Workflow.objects.count() == 1
    # Alpha's objects are untouched.
    alpha_client = api(alpha.admin_key)
    agent = alpha_client.get(f"/agents/{world['agent_id']}").json()
    assert agent["version"] == 1, json.dumps(agent)
