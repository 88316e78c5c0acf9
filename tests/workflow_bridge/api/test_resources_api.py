"""Resources over REST: create and list them, fire activities end to end (history, available
activities with explanations, 409 with the explanation when the marking or a rule refuses), a
firing that waits for its activity agents (202), triggering state agents, and the executions
the workflow started for a resource."""

from __future__ import annotations

from django_tenants.utils import schema_context

from agents.models import Execution
from tenants.audit.models import AuditLog
from tests.workflow_bridge.api.conftest import create_resource, create_workflow, new_slug
from tests.workflow_bridge.test_cascade import review_flow
from workflow_bridge.models import Resource


def test_firing_end_to_end_over_http(admin, user, readonly, workflow):
    resource = create_resource(
        user, workflow["slug"], {"data": {"document": "tides"}, "metadata": {"source": "mail"}}
    )
    rid = resource["id"]
    assert resource["state"] == "draft" and resource["marking"] == {"draft": 1}
    assert resource["version"] == 1 and resource["workflow_id"] == workflow["id"]
    assert [e["kind"] for e in resource["history"]] == ["created"]

    available = readonly.get(f"/resources/{rid}/available-activities").json()
    verdicts = {a["activity"]: a for a in available["activities"]}
    assert verdicts["submit"]["allowed"] and verdicts["submit"]["explanation"]
    assert not verdicts["checked"]["allowed"]
    assert "'checking' holds 0" in verdicts["checked"]["explanation"]

    fired = user.post(f"/resources/{rid}/activities/submit", {"data": {"owner": "ann"}})
    assert fired.status_code == 200
    assert fired.json()["state"] == "summarising" and fired.json()["version"] == 2
    assert fired.json()["data"] == {"document": "tides", "owner": "ann"}  # merged
    assert user.post(f"/resources/{rid}/activities/summarised").status_code == 200

    # The rule of "checked" needs data.summary: refused with the rule's explanation.
    refused = user.post(f"/resources/{rid}/activities/checked", {"data": {"owner": None}})
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "conflict" and error["details"]["activity"] == "checked"
    assert "has-summary" in error["details"]["explanation"]
    assert "data.summary is absent" in error["details"]["explanation"]
    unchanged = readonly.get(f"/resources/{rid}").json()
    assert unchanged["state"] == "checking" and unchanged["data"]["owner"] == "ann"
    checks = {
        a["activity"]: a
        for a in readonly.get(f"/resources/{rid}/available-activities").json()["activities"]
    }
    assert checks["checked"]["rules"][0]["rule"] == "has-summary"
    assert checks["checked"]["rules"][0]["passed"] is False

    # The marking refuses a step from the wrong place, naming the place it needs.
    wrong = user.post(f"/resources/{rid}/activities/submit")
    assert wrong.status_code == 409
    assert "'draft' holds 0" in wrong.json()["error"]["details"]["explanation"]

    done = user.post(f"/resources/{rid}/activities/checked", {"data": {"summary": "ok"}})
    assert done.status_code == 200 and done.json()["state"] == "done"
    history = readonly.get(f"/resources/{rid}").json()["history"]
    assert [(e["seq"], e["kind"], e["activity"]) for e in history] == [
        (1, "created", ""),
        (2, "activity", "submit"),
        (3, "activity", "summarised"),
        (4, "activity", "checked"),
    ]
    assert history[1]["from_marking"] == {"draft": 1}
    assert history[1]["to_marking"] == {"summarising": 1}
    assert history[1]["data"] == {"data": {"owner": "ann"}}
    assert all(e["actor"].startswith("api_key:") for e in history)


def test_fire_refusals(user, readonly, workflow, alpha):
    rid = create_resource(user, workflow["id"])["id"]
    missing = user.post(f"/resources/{rid}/activities/no-such-activity")
    assert missing.status_code == 404
    assert user.post("/resources/res_nope/activities/submit").status_code == 404
    for body, field in (({"data": [1]}, "data"), ({"colour": "red"}, "colour"), ([], "body")):
        response = user.post(f"/resources/{rid}/activities/submit", body)
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith(f"{field}:")
    denied = readonly.post(f"/resources/{rid}/activities/submit")
    assert denied.status_code == 403
    with schema_context(alpha.schema):
        assert Resource.objects.get(pk=rid).state == "draft"
        assert AuditLog.objects.filter(
            action="permission.denied", details__permission="workflows.run"
        ).exists()


def test_create_refusals_and_roles(user, readonly, workflow, alpha):
    path = f"/workflows/{workflow['id']}/resources"
    for body, field in (
        ({"data": "x"}, "data"),
        ({"metadata": [1]}, "metadata"),
        ({"marking": {"done": 1}}, "marking"),
        ({"id": "res_mine"}, "id"),
    ):
        response = user.post(path, body)
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith(f"{field}:")
    assert readonly.post(path, {}).status_code == 403
    assert user.post("/workflows/nope/resources", {}).status_code == 404
    assert readonly.get("/resources/res_nope").status_code == 404
    with schema_context(alpha.schema):
        assert not Resource.objects.exists()


def test_list_filters_by_place_and_state_with_pages(admin, user, readonly):
    definition = {
        "format": "circuit-breaker/workflow@1",
        "slug": new_slug("split"),
        "places": ["start", "a", "b", "end"],
        "initial_marking": {"start": 1},
        "transitions": [
            {"id": "split", "inputs": ["start"], "outputs": ["a", "b"]},
            {"id": "join", "inputs": ["a", "b"], "outputs": ["end"]},
        ],
        "final_places": ["end"],
    }
    workflow = create_workflow(admin, definition)
    ids = [create_resource(user, workflow["id"])["id"] for _ in range(3)]
    assert user.post(f"/resources/{ids[0]}/activities/split").json()["state"] is None
    path = f"/workflows/{workflow['id']}/resources"

    everything = readonly.get(path).json()
    assert everything["total"] == 3
    assert [r["id"] for r in everything["resources"]] == list(reversed(ids))  # newest first
    in_a = readonly.get(path, place="a").json()
    assert [r["id"] for r in in_a["resources"]] == [ids[0]]
    assert in_a["resources"][0]["marking"] == {"a": 1, "b": 1}
    at_start = readonly.get(path, state="start").json()
    assert sorted(r["id"] for r in at_start["resources"]) == sorted(ids[1:])
    assert readonly.get(path, state="a").json()["total"] == 0  # two tokens: no one state
    page = readonly.get(path, limit=2, offset=2).json()
    assert (page["total"], page["limit"], page["offset"], page["page"]) == (3, 2, 2, 2)
    assert [r["id"] for r in page["resources"]] == [ids[0]]
    assert readonly.get(path, limit=1, page=2).json()["resources"][0]["id"] == ids[1]

    for params, field in (
        ({"place": "nowhere"}, "place"),
        ({"state": "nowhere"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"offset": "x"}, "offset"),
        ({"colour": "red"}, "colour"),
    ):
        response = readonly.get(path, **params)
        assert response.status_code == 400, params
        assert response.json()["error"]["message"].startswith(f"{field}:")


def test_an_activity_with_agents_answers_202_and_its_runs_are_the_resources_executions(
    admin, user, readonly, workflow, echo_agent, alpha
):
    bound = admin.post(
        f"/workflows/{workflow['id']}/activity-agents",
        {"activity": "submit", "agent": echo_agent.slug},
    )
    assert bound.status_code == 201
    rid = create_resource(user, workflow["id"], {"data": {"document": "tides"}})["id"]

    pending = user.post(f"/resources/{rid}/activities/submit", {"data": {"owner": "ann"}})
    assert pending.status_code == 202
    assert pending["Location"] == f"/resources/{rid}"
    firing = pending.json()
    assert firing["status"] == "pending" and firing["activity"] == "submit"
    assert firing["resource_id"] == rid and firing["data"] == {"owner": "ann"}
    assert len(firing["execution_ids"]) == 1
    execution_id = firing["execution_ids"][0]

    detail = readonly.get(f"/resources/{rid}").json()
    assert detail["state"] == "draft"  # the token waits for the agent
    assert detail["firings"][0]["id"] == firing["id"]
    run = detail["agent_runs"][0]
    assert run["execution_id"] == execution_id and run["execution_status"] == "queued"
    assert run["status"] == "running" and run["agent"] == echo_agent.slug
    assert run["activity"] == "submit" and run["firing_id"] == firing["id"]
    assert [e["kind"] for e in detail["history"]] == [
        "created",
        "activity_pending",
        "agent_triggered",
    ]
    assert detail["history"][-1]["execution_id"] == execution_id

    listed = readonly.get(f"/resources/{rid}/executions").json()
    assert listed["total"] == 1
    execution = listed["executions"][0]
    assert execution["execution_id"] == execution_id and execution["status"] == "queued"
    assert execution["agent_id"] == echo_agent.id
    assert execution["context"]["workflow_context"]["resource_id"] == rid
    assert readonly.get(f"/resources/{rid}/executions", status="completed").json()["total"] == 0
    bad = readonly.get(f"/resources/{rid}/executions", resource_id="res_other")
    assert bad.status_code == 400
    other = create_resource(user, workflow["id"])["id"]
    assert readonly.get(f"/resources/{other}/executions").json()["executions"] == []
    assert readonly.get("/resources/res_nope/executions").status_code == 404


def test_trigger_agents_queues_the_state_agents_of_the_current_places(
    admin, user, readonly, workflow, echo_agent
):
    bound = admin.post(
        f"/workflows/{workflow['id']}/state-agents",
        {"place": "summarising", "agent": echo_agent.id},
    )
    assert bound.status_code == 201
    rid = create_resource(user, workflow["id"])["id"]
    idle = user.post(f"/resources/{rid}/trigger-agents")
    assert idle.status_code == 202 and idle.json() == {"resource_id": rid, "queued": 0}
    user.post(f"/resources/{rid}/activities/submit")
    queued = user.post(f"/resources/{rid}/trigger-agents", {})
    assert queued.status_code == 202 and queued.json()["queued"] == 1
    assert user.post(f"/resources/{rid}/trigger-agents", {"force": True}).status_code == 400
    assert readonly.post(f"/resources/{rid}/trigger-agents").status_code == 403
    assert user.post("/resources/res_nope/trigger-agents").status_code == 404


def test_available_activities_of_a_missing_resource_is_404(readonly):
    assert readonly.get("/resources/res_nope/available-activities").status_code == 404


def test_resource_of_a_deleted_execution_shows_no_status(admin, user, workflow, echo_agent, alpha):
    """An agent run whose execution is gone still lists, with ``execution_status: null``."""
    admin.post(
        f"/workflows/{workflow['id']}/activity-agents",
        {"activity": "submit", "agent": echo_agent.slug},
    )
    rid = create_resource(user, workflow["id"])["id"]
    execution_id = user.post(f"/resources/{rid}/activities/submit").json()["execution_ids"][0]
    with schema_context(alpha.schema):
        Execution.objects.filter(pk=execution_id).delete()
    run = user.get(f"/resources/{rid}").json()["agent_runs"][0]
    assert run["execution_id"] == execution_id and run["execution_status"] is None


def test_workflow_list_counts_resources(admin, user):
    workflow = create_workflow(admin, review_flow(new_slug()))
    create_resource(user, workflow["id"])
    listed = {w["id"]: w for w in user.get("/workflows").json()["workflows"]}
    assert listed[workflow["id"]]["resource_count"] == 1
