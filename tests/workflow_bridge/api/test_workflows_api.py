"""``/workflows``: create from the definition, read by id or slug, change (next version), delete
(refused while resources exist), versions, analysis, the SVG drawing; roles and refusals."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from django_tenants.utils import schema_context

from tenants.audit.models import AuditLog
from tests.workflow_bridge.api.conftest import (
    create_resource,
    create_workflow,
    new_slug,
    put,
)
from tests.workflow_bridge.test_cascade import review_flow
from workflow_bridge.models import Rule, Workflow

SVG = "{http://www.w3.org/2000/svg}"


def test_create_read_list_a_workflow(admin, readonly):
    definition = review_flow(new_slug())
    response = admin.post("/workflows", definition)
    assert response.status_code == 201
    created = response.json()
    assert response["Location"] == f"/workflows/{created['id']}"
    assert created["slug"] == definition["slug"] and created["version"] == 1
    assert created["definition"] == definition and created["resource_count"] == 0
    assert created["created_by"].startswith("api_key:")
    assert created["created_at"].endswith("+00:00")  # ISO 8601, timezone-aware
    for ref in (created["id"], created["slug"]):
        assert readonly.get(f"/workflows/{ref}").json() == created
    listed = readonly.get("/workflows").json()["workflows"]
    assert [w["slug"] for w in listed] == [definition["slug"]]
    assert "definition" not in listed[0]


def test_a_definition_is_checked_field_by_field(admin):
    cases = [
        ([], "body"),
        ({**review_flow(new_slug()), "colour": "red"}, "colour"),
        ({**review_flow(new_slug()), "slug": "Not A Slug"}, "slug"),
        ({**review_flow(new_slug()), "name": "x" * 201}, "name"),
        ({**review_flow(new_slug()), "name": "bell\x07"}, "name"),
        ({**review_flow(new_slug()), "initial_state": "nowhere"}, "definition"),
    ]
    for body, field in cases:
        response = admin.post("/workflows", body)
        assert response.status_code == 400, (body, response.content)
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert error["message"].startswith(f"{field}:"), error
    bad_rule = review_flow(new_slug())
    bad_rule["rules"].append({"id": "second", "condition": {"type": "AlwaysTrue"}})
    message = admin.post("/workflows", bad_rule).json()["error"]["message"]
    assert message.startswith("rules[1].condition:") and "AlwaysTrue" in message
    assert admin.get("/workflows").json()["workflows"] == []


def test_a_slug_is_unique(admin, workflow):
    again = admin.post("/workflows", review_flow(workflow["slug"]))
    assert again.status_code == 409
    other = create_workflow(admin)
    renamed = put(admin, f"/workflows/{other['id']}", review_flow(workflow["slug"]))
    assert renamed.status_code == 409 and "slug" in renamed.json()["error"]["message"]


def test_put_stores_the_next_version_and_versions_lists_them(admin, workflow, alpha):
    path = f"/workflows/{workflow['slug']}"
    changed = {**workflow["definition"], "name": "Review, second edition"}
    response = put(admin, path, changed)
    assert response.status_code == 200
    assert response.json()["version"] == 2 and response.json()["name"] == "Review, second edition"
    same = put(admin, path, changed)
    assert same.status_code == 200 and same.json()["version"] == 2  # unchanged: no new version
    versions = admin.get(f"{path}/versions").json()
    assert versions["workflow_id"] == workflow["id"]
    assert [v["version"] for v in versions["versions"]] == [2, 1]
    assert versions["versions"][1]["definition"] == workflow["definition"]
    with schema_context(alpha.schema):
        assert AuditLog.objects.filter(action="workflow.update", target_id=workflow["id"]).exists()


def test_put_cannot_remove_a_place_that_holds_tokens(admin, workflow):
    create_resource(admin, workflow["id"])  # in "draft"
    definition = review_flow(workflow["slug"])
    definition["states"] = ["start", "summarising", "checking", "done"]
    definition["initial_state"] = "start"
    definition["activities"][0]["from_states"] = ["start"]
    response = put(admin, f"/workflows/{workflow['id']}", definition)
    assert response.status_code == 400
    assert "'draft' holds tokens" in response.json()["error"]["message"]
    assert admin.get(f"/workflows/{workflow['id']}").json()["version"] == 1


def test_delete_is_refused_while_resources_exist(admin, workflow, alpha):
    resource = create_resource(admin, workflow["id"])
    refused = admin.delete(f"/workflows/{workflow['id']}")
    assert refused.status_code == 409
    assert refused.json()["error"]["details"] == {"resources": 1}
    assert admin.get(f"/workflows/{workflow['id']}").status_code == 200
    with schema_context(alpha.schema):
        Workflow.objects.get(pk=workflow["id"]).resources.filter(pk=resource["id"]).delete()
    assert admin.delete(f"/workflows/{workflow['slug']}").status_code == 204
    assert admin.get(f"/workflows/{workflow['id']}").status_code == 404
    with schema_context(alpha.schema):
        assert not Rule.objects.filter(workflow_id=workflow["id"]).exists()
        assert AuditLog.objects.filter(action="workflow.delete", target_id=workflow["id"]).exists()


def test_missing_workflows_are_404(readonly, admin):
    for path in ("/workflows/nope", "/workflows/nope/versions", "/workflows/nope/analysis"):
        response = readonly.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert put(admin, "/workflows/nope", review_flow("nope")).status_code == 404
    assert admin.delete("/workflows/nope").status_code == 404


def test_only_admins_write_workflows_and_denials_are_audited(admin, user, readonly, alpha):
    workflow = create_workflow(admin)
    for client in (user, readonly):
        assert client.get("/workflows").status_code == 200
        assert client.post("/workflows", review_flow(new_slug())).status_code == 403
        assert (
            put(client, f"/workflows/{workflow['id']}", workflow["definition"]).status_code == 403
        )
        assert client.delete(f"/workflows/{workflow['id']}").status_code == 403
    assert readonly.post("/workflows", review_flow(new_slug())).json()["error"]["code"] == (
        "permission_denied"
    )
    with schema_context(alpha.schema):
        denials = AuditLog.objects.filter(
            action="permission.denied", details__permission="workflows.write"
        )
        assert denials.count() == 7
        assert Workflow.objects.count() == 1


def test_analysis_explains_the_net(readonly, admin):
    definition = review_flow(new_slug())
    definition["states"].append("limbo")  # nothing leads there
    workflow = create_workflow(admin, definition)
    body = readonly.get(f"/workflows/{workflow['id']}/analysis").json()
    assert body["workflow_id"] == workflow["id"] and body["version"] == 1
    analysis = body["analysis"]
    assert analysis["bounded"] is True and analysis["unreachable_places"] == ["limbo"]
    assert analysis["explanations"]


def test_the_diagram_is_svg_with_the_tokens_of_all_resources(readonly, admin):
    definition = review_flow(new_slug())
    definition["name"] = '</title><script>alert("wf")</script>'
    definition["activities"][0]["name"] = "<img src=x onerror=alert(1)>"
    workflow = create_workflow(admin, definition)
    first = create_resource(admin, workflow["id"])
    create_resource(admin, workflow["id"])
    create_resource(admin, workflow["id"])
    admin.post(f"/resources/{first['id']}/activities/submit", {})

    response = readonly.get(
        f"/workflows/{workflow['slug']}/diagram.svg", headers={"Accept": "image/svg+xml"}
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml; charset=utf-8"
    assert response["Content-Security-Policy"] == "default-src 'none'"
    assert response["X-Content-Type-Options"] == "nosniff"
    text = response.content.decode()
    assert "<script" not in text and "<img" not in text
    root = ET.fromstring(text)  # well-formed: the hostile names did not break out
    assert root.tag == f"{SVG}svg"
    assert root.find(f"{SVG}title").text == definition["name"]
    tokens = {
        g.get("data-place"): int(g.get("data-tokens"))
        for g in root.iter(f"{SVG}g")
        if g.get("data-place")
    }
    assert tokens == {"draft": 2, "summarising": 1, "checking": 0, "done": 0}
    names = {t.text for t in root.iter(f"{SVG}text")}
    assert any(name and name.startswith("<img") for name in names)  # shown as text

    missing = readonly.get("/workflows/nope/diagram.svg", headers={"Accept": "image/svg+xml"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"  # errors stay JSON


def _import(client, text: str, content_type: str = "application/yaml"):
    return client.client.post(
        "/workflows/import", text, content_type=content_type, **client._headers({})
    )


def test_a_workflow_file_is_imported_over_the_api(admin, readonly, alpha, bravo, api):
    import yaml

    from tests.agents.conftest import make_agent, make_credential

    with schema_context(alpha.schema):
        agent = make_agent(make_credential(kind="echo"), alpha.schema)
    content = {
        **review_flow(new_slug("file")),
        "state_agents": [
            {"place": "summarising", "agent": agent.slug, "auto_activity": "summarised"}
        ],
    }
    text = yaml.safe_dump(content)
    first = _import(admin, text)
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["created"] and body["version"] == 1 and body["state_agents"] == 1
    assert first["Location"] == f"/workflows/{body['id']}"
    again = _import(admin, text)
    assert again.status_code == 200 and again.json()["version"] == 1
    content["name"] = "Renamed in the file"
    changed = _import(admin, json.dumps(content), "application/json")
    assert changed.status_code == 200 and changed.json()["version"] == 2
    # Refusals: the wrong media type, a broken file, a readonly key, the reserved slug.
    assert _import(admin, text, "text/plain").status_code == 415
    broken = _import(admin, "slug: [unclosed")
    assert broken.status_code == 400 and "YAML" in broken.json()["error"]["message"]
    assert _import(readonly, text).status_code == 403
    reserved = _import(admin, yaml.safe_dump({**review_flow("x"), "slug": "import"}))
    assert reserved.status_code == 400 and "reserved" in reserved.json()["error"]["message"]
    # Another tenant's key imports into its own tenant (here: refused, its agent is unknown).
    foreign = _import(api(bravo.admin_key), text)
    assert foreign.status_code == 400 and "no agent" in foreign.json()["error"]["message"]
    with schema_context(bravo.schema):
        assert not Workflow.objects.filter(slug=content["slug"]).exists()
