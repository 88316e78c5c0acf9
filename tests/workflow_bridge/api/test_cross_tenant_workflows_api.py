"""Bravo's credentials on alpha's workflows, rules, bindings and resources: every URL and
method of the workflow API answers 404, exactly like a missing object, says nothing of what
alpha holds, and changes nothing. A test walks the URL conf so that a new endpoint cannot be
left out."""

from __future__ import annotations

import json
from typing import Any

from django.urls import resolve
from django_tenants.utils import schema_context

from agents.models import Execution
from tests.conftest import ApiClient
from tests.workflow_bridge.api.conftest import create_resource, create_workflow, patch, put
from tests.workflow_bridge.test_cascade import review_flow
from workflow_bridge import urls as workflow_urls
from workflow_bridge.models import ActivityAgent, Resource, Rule, StateAgent, Workflow

SECRET = "alpha-only-secret"
METHODS = ("get", "post", "put", "patch", "delete")


class Recorder:
    """Sends through a client and remembers (route, method) of every call."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.seen: set[tuple[str, str]] = set()

    def _note(self, method: str, path: str) -> None:
        self.seen.add((resolve(path).route, method))

    def get(self, path: str) -> Any:
        self._note("get", path)
        return self.client.get(path)

    def post(self, path: str, body: Any = None) -> Any:
        self._note("post", path)
        return self.client.post(path, body)

    def put(self, path: str, body: Any) -> Any:
        self._note("put", path)
        return put(self.client, path, body)

    def patch(self, path: str, body: Any) -> Any:
        self._note("patch", path)
        return patch(self.client, path, body)

    def delete(self, path: str) -> Any:
        self._note("delete", path)
        return self.client.delete(path)


def _every_route_and_method() -> set[tuple[str, str]]:
    expected = set()
    for pattern in workflow_urls.urlpatterns:
        view = pattern.callback.view_class  # type: ignore[attr-defined]
        expected |= {(str(pattern.pattern), m) for m in METHODS if hasattr(view, m)}
    return expected


def _alpha_site(alpha_admin: ApiClient, agent: Any) -> dict[str, Any]:
    definition = review_flow("secret-flow")
    definition["name"] = SECRET
    workflow = create_workflow(alpha_admin, definition)
    wid = workflow["id"]
    state = alpha_admin.post(
        f"/workflows/{wid}/state-agents", {"place": "checking", "agent": agent.slug}
    ).json()
    activity = alpha_admin.post(
        f"/workflows/{wid}/activity-agents", {"activity": "submit", "agent": agent.slug}
    ).json()
    resource = create_resource(alpha_admin, wid, {"data": {"secret": SECRET}})
    fired = alpha_admin.post(f"/resources/{resource['id']}/activities/submit")
    assert fired.status_code == 202  # an execution of alpha now belongs to the resource
    return {"workflow": workflow, "state": state, "activity": activity, "resource": resource}


def test_bravo_gets_404_on_every_alpha_workflow_url_and_changes_nothing(
    api, alpha, bravo, echo_agent
):
    site = _alpha_site(api(alpha.admin_key), echo_agent)
    workflow, resource = site["workflow"], site["resource"]
    rid = resource["id"]
    client = Recorder(api(bravo.admin_key))
    valid_definition = review_flow("secret-flow")
    calls = []
    for ref in (workflow["id"], workflow["slug"]):
        base = f"/workflows/{ref}"
        calls += [
            client.get(base),
            client.put(base, valid_definition),
            client.delete(base),
            client.get(f"{base}/versions"),
            client.get(f"{base}/analysis"),
            client.get(f"{base}/diagram.svg"),
            client.get(f"{base}/rules"),
            client.post(
                f"{base}/rules",
                {
                    "id": "has-summary",
                    "condition": {
                        "type": "Not",
                        "condition": {"type": "FieldExists", "field": "data.x"},
                    },
                },
            ),
            client.get(f"{base}/rules/has-summary"),
            client.post(f"{base}/rules/has-summary/evaluate", {"data": {}}),
            client.post(f"{base}/rules/has-summary/evaluate", {"resource_id": rid}),
            client.post(
                f"{base}/rules/evaluate",
                {"condition": {"type": "FieldExists", "field": "data.secret"}, "resource_id": rid},
            ),
            client.get(f"{base}/resources"),
            client.post(f"{base}/resources", {"data": {}}),
            client.get(f"{base}/state-agents"),
            client.post(f"{base}/state-agents", {"place": "checking", "agent": echo_agent.slug}),
            client.get(f"{base}/state-agents/{site['state']['id']}"),
            client.patch(f"{base}/state-agents/{site['state']['id']}", {"enabled": False}),
            client.delete(f"{base}/state-agents/{site['state']['id']}"),
            client.get(f"{base}/activity-agents"),
            client.post(f"{base}/activity-agents", {"activity": "redo", "agent": echo_agent.slug}),
            client.get(f"{base}/activity-agents/{site['activity']['id']}"),
            client.patch(f"{base}/activity-agents/{site['activity']['id']}", {"required": False}),
            client.delete(f"{base}/activity-agents/{site['activity']['id']}"),
        ]
    calls += [
        client.get(f"/resources/{rid}"),
        client.post(f"/resources/{rid}/activities/summarised", {"data": {"x": 1}}),
        client.post(f"/resources/{rid}/activities/submit"),
        client.get(f"/resources/{rid}/available-activities"),
        client.post(f"/resources/{rid}/trigger-agents"),
        client.get(f"/resources/{rid}/executions"),
    ]
    for response in calls:
        assert response.status_code == 404, (response.request, response.content)
        assert response.json()["error"]["code"] == "not_found"
        text = response.content.decode()
        assert SECRET not in text and workflow["id"] not in text and rid not in text

    # Every route and method of the workflow API was asked; /workflows itself and the import
    # name no object of alpha's: they act on the caller's own tenant (below, and
    # test_a_workflow_file_is_imported_over_the_api).
    own = {("workflows", "get"), ("workflows", "post"), ("workflows/import", "post")}
    missing = _every_route_and_method() - client.seen - own
    assert missing == set(), missing

    # Bravo's own collections show nothing of alpha's.
    bravo_client = api(bravo.admin_key)
    assert bravo_client.get("/workflows").json() == {"workflows": []}
    assert SECRET not in json.dumps(bravo_client.get("/executions").json())

    with schema_context(alpha.schema):
        stored = Workflow.objects.get(pk=workflow["id"])
        assert stored.version == 1 and stored.name == SECRET
        assert Rule.objects.filter(workflow=stored).count() == 1
        assert StateAgent.objects.get(pk=site["state"]["id"]).enabled
        assert ActivityAgent.objects.get(pk=site["activity"]["id"]).required
        kept = Resource.objects.get(pk=rid)
        assert kept.marking == {"draft": 1} and kept.version == 1
        assert kept.history.count() == 3  # created, activity_pending, agent_triggered
        assert Resource.objects.count() == 1
        assert Execution.objects.count() == 1
    with schema_context(bravo.schema):
        assert not Workflow.objects.exists() and not Resource.objects.exists()
        assert not Execution.objects.exists()


def test_bravo_cannot_reach_alpha_through_its_own_workflow(api, alpha, bravo, echo_agent):
    """References inside bodies (an agent, a resource) are looked up in the caller's tenant
    only: alpha's ids are unknown there."""
    site = _alpha_site(api(alpha.admin_key), echo_agent)
    client = api(bravo.admin_key)
    mine = create_workflow(client, review_flow("secret-flow"))  # the same slug, no clash
    bound = client.post(
        f"/workflows/{mine['id']}/state-agents", {"place": "checking", "agent": echo_agent.id}
    )
    assert bound.status_code == 400 and bound.json()["error"]["message"].startswith("agent:")
    evaluated = client.post(
        f"/workflows/{mine['id']}/rules/has-summary/evaluate",
        {"resource_id": site["resource"]["id"]},
    )
    assert evaluated.status_code == 400
    assert SECRET not in evaluated.content.decode()
    assert client.get("/workflows/secret-flow").json()["id"] == mine["id"]
    assert (
        api(alpha.admin_key).get("/workflows/secret-flow").json()["id"] == (site["workflow"]["id"])
    )
