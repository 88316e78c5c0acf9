"""The OpenAPI document lists every workflow endpoint with its shapes, and the documented
bodies accept exactly the keys the services accept."""

from __future__ import annotations

import re

from django.test import Client

from workflow_bridge import urls as workflow_urls
from workflow_bridge.api import inputs
from workflow_bridge.binding_services import ACTIVITY_AGENT_FIELDS, STATE_AGENT_FIELDS
from workflow_bridge.definitions import FORMAT, compile_definition
from workflow_bridge.rules import RULE_FIELDS

METHODS = ("get", "post", "put", "patch", "delete")


def _keys(shape: object) -> frozenset[str]:
    return shape.__required_keys__ | shape.__optional_keys__  # type: ignore[attr-defined]


def test_every_workflow_endpoint_is_in_the_openapi_document(alpha):
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    expected = set()
    for pattern in workflow_urls.urlpatterns:
        route = re.sub(r"<str:(\w+)>", r"{\1}", str(pattern.pattern))
        view = pattern.callback.view_class
        expected |= {(f"/{route}", m) for m in METHODS if hasattr(view, m)}
    documented = {(path, m) for path, item in paths.items() for m in item if m in METHODS}
    assert expected - documented == set()

    fire = paths["/resources/{resource_id}/activities/{activity_id}"]["post"]
    assert set(fire["responses"]) >= {"200", "202", "409"}
    body = fire["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"data"}
    diagram = paths["/workflows/{workflow_id}/diagram.svg"]["get"]
    assert "image/svg+xml" in diagram["responses"]["200"]["content"]
    created = paths["/workflows/{workflow_id}/state-agents"]["post"]
    shape = created["responses"]["201"]["content"]["application/json"]["schema"]
    assert {"id", "agent", "place", "auto_activity"} <= set(shape["properties"])
    rule = paths["/workflows/{workflow_id}/rules"]["post"]["requestBody"]
    assert rule["content"]["application/json"]["schema"]["required"] == ["condition", "id"]


def test_documented_bodies_are_the_ones_the_services_accept():
    assert _keys(inputs.StateAgentBody) == STATE_AGENT_FIELDS
    assert _keys(inputs.ActivityAgentBody) == ACTIVITY_AGENT_FIELDS
    assert _keys(inputs.RuleBody) == RULE_FIELDS
    # Every documented definition key is one compile_definition knows (an unknown one is
    # refused, naming it).
    for key in _keys(inputs.WorkflowDefinitionBody):
        definition = {"format": FORMAT, "slug": "x", "places": ["p"], "initial_marking": {}}
        try:
            compile_definition({**definition, key: definition.get(key)})
        except Exception as exc:  # a wrong value may be refused, never the key itself
            assert "unknown field" not in str(exc), key
