"""A state agent bound over the API runs in a real worker (``manage.py worker``, the fake LLM
server behind the agent): the request that moved the resource only queued it, the worker ran
it, its result was written back and its auto activity fired; the resource's executions
endpoint lists the run like the executions API does."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django_tenants.utils import schema_context

from tests.agents.conftest import make_agent, make_credential
from tests.worker.conftest import wait_for
from tests.workflow_bridge.api.conftest import create_resource, create_workflow

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_binding_made_over_the_api_runs_its_agent_in_a_worker(
    committed_personas: Any,
    api: Any,
    fake_llm: Any,
    settings: Any,
    clean_queue: None,
    spawn_worker: Any,
) -> None:
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    alpha = committed_personas["alpha"]
    key = f"sk-test-{uuid.uuid4().hex}"
    with schema_context(alpha.schema):
        credential = make_credential(kind="openai", base_url=f"{fake_llm.url}/v1", api_key=key)
        agent = make_agent(credential, alpha.schema)
    admin, user = api(alpha.admin_key), api(alpha.user_key)
    workflow = create_workflow(admin)
    bound = admin.post(
        f"/workflows/{workflow['id']}/state-agents",
        {
            "place": "summarising",
            "agent": agent.slug,
            "input_mapping": {"message": "data.document"},
            "output_mapping": {"data.summary": "output"},
            "auto_activity": "summarised",
        },
    )
    assert bound.status_code == 201, bound.content
    resource = create_resource(user, workflow["id"], {"data": {"document": "About tides."}})
    rid = resource["id"]
    fired = user.post(f"/resources/{rid}/activities/submit")
    assert fired.status_code == 200 and fired.json()["state"] == "summarising"
    assert fired.json()["agent_runs"] == []  # queued for a worker, not run in the request

    fake_llm.script(key, {"reply": "Tides rise and fall."})
    spawn_worker()
    wait_for(lambda: user.get(f"/resources/{rid}").json()["state"] == "checking", 20, "the run")

    detail = user.get(f"/resources/{rid}").json()
    assert detail["data"] == {"document": "About tides.", "summary": "Tides rise and fall."}
    [run] = detail["agent_runs"]
    assert run["agent"] == agent.slug and run["place"] == "summarising"
    assert run["status"] == "applied" and run["execution_status"] == "completed"
    kinds = [e["kind"] for e in detail["history"]]
    assert kinds == ["created", "activity", "agent_triggered", "agent_result", "activity"]
    assert detail["history"][-1]["actor"] == f"agent:{agent.slug}"

    listed = api(alpha.readonly_key).get(f"/resources/{rid}/executions").json()
    assert listed["total"] == 1
    [execution] = listed["executions"]
    assert execution["execution_id"] == run["execution_id"]
    assert execution["status"] == "completed" and execution["output"] == "Tides rise and fall."
    assert execution["agent_id"] == agent.id
    assert execution["context"]["workflow_context"]["resource_id"] == rid
    sent = fake_llm.requests(key)[-1]["json"]["messages"][-1]["content"]
    assert "About tides." in sent
    # The same run, as the executions API shows it.
    same = user.get(f"/executions/{run['execution_id']}").json()
    assert same["status"] == "completed" and same["output"] == execution["output"]
