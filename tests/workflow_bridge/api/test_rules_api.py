"""Rules over REST: latest versions, a changed rule as a new version, all versions of one,
evaluation of a stored rule or an ad-hoc condition with its explanation."""

from __future__ import annotations

from django_tenants.utils import schema_context

from tenants.audit.models import AuditLog
from tests.workflow_bridge.api.conftest import create_resource, create_workflow

BIG = {"type": "FieldGreaterThan", "field": "data.total", "value": 100}


def test_rules_are_versioned(admin, readonly, workflow):
    path = f"/workflows/{workflow['id']}/rules"
    listed = readonly.get(path).json()
    assert listed["workflow_id"] == workflow["id"]
    assert [(r["id"], r["version"]) for r in listed["rules"]] == [("has-summary", 1)]

    created = admin.post(path, {"id": "big-order", "name": "Big order", "condition": BIG})
    assert created.status_code == 201
    assert created["Location"] == f"{path}/big-order"
    assert created.json()["version"] == 1 and created.json()["condition"] == BIG

    unchanged = admin.post(path, {"id": "big-order", "name": "Big order", "condition": BIG})
    assert unchanged.status_code == 200 and unchanged.json()["version"] == 1

    bigger = {**BIG, "value": 1000}
    changed = admin.post(path, {"id": "big-order", "name": "Big order", "condition": bigger})
    assert changed.status_code == 201 and changed.json()["version"] == 2

    latest = {r["id"]: r for r in readonly.get(path).json()["rules"]}
    assert latest["big-order"]["version"] == 2 and latest["big-order"]["condition"] == bigger
    versions = readonly.get(f"{path}/big-order").json()
    assert versions["rule_id"] == "big-order"
    assert [(v["version"], v["condition"]["value"]) for v in versions["versions"]] == [
        (2, 1000),
        (1, 100),
    ]
    assert readonly.get(f"{path}/no-such-rule").status_code == 404


def test_a_rule_body_is_checked(admin, workflow):
    path = f"/workflows/{workflow['id']}/rules"
    cases = [
        ({"id": "r", "condition": BIG, "colour": "red"}, "colour"),
        ({"id": "Not Valid", "condition": BIG}, "id"),
        ({"id": "r", "condition": {"type": "AlwaysTrue"}}, "condition"),
        ({"id": "r", "condition": BIG, "tags": "x"}, "tags"),
        ({"id": "r", "condition": BIG, "name": 3}, "name"),
        (["a list"], "body"),
    ]
    for body, field in cases:
        response = admin.post(path, body)
        assert response.status_code == 400, (body, response.content)
        assert response.json()["error"]["message"].startswith(f"{field}:"), response.json()


def test_readonly_and_user_cannot_store_rules(user, readonly, workflow, alpha):
    for client in (user, readonly):
        response = client.post(f"/workflows/{workflow['id']}/rules", {"id": "r", "condition": BIG})
        assert response.status_code == 403
    with schema_context(alpha.schema):
        assert (
            AuditLog.objects.filter(
                action="permission.denied", details__permission="workflows.write"
            ).count()
            == 2
        )


def test_evaluate_a_stored_rule_on_data_or_on_a_resource(admin, readonly, workflow):
    path = f"/workflows/{workflow['id']}/rules/has-summary/evaluate"
    failed = readonly.post(path, {"data": {"title": "x"}})
    assert failed.status_code == 200
    body = failed.json()
    assert body["rule_id"] == "has-summary" and body["version"] == 1
    assert body["passed"] is False and body["resource_id"] is None
    assert body["explanation"].startswith("FAIL: data.summary is absent")
    assert body["result"]["passed"] is False and body["result"]["children"] == []

    resource = create_resource(admin, workflow["id"], {"data": {"summary": "short"}})
    passed = readonly.post(path, {"resource_id": resource["id"]}).json()
    assert passed["passed"] is True and passed["resource_id"] == resource["id"]
    assert passed["explanation"].startswith("PASS")

    other = create_resource(admin, create_workflow(admin)["id"])
    wrong = readonly.post(path, {"resource_id": other["id"]})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["message"].startswith("resource_id:")
    both = readonly.post(path, {"resource_id": resource["id"], "data": {}})
    assert both.status_code == 400 and both.json()["error"]["message"].startswith("resource_id:")
    for body, field in (({"data": []}, "data"), ({"extra": 1}, "extra"), ([], "body")):
        response = readonly.post(path, body)
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith(f"{field}:")
    missing = readonly.post(f"/workflows/{workflow['id']}/rules/nope/evaluate", {"data": {}})
    assert missing.status_code == 404


def test_evaluate_an_ad_hoc_condition(readonly, workflow):
    path = f"/workflows/{workflow['id']}/rules/evaluate"
    condition = {"type": "And", "conditions": [BIG, {"type": "FieldExists", "field": "data.who"}]}
    body = readonly.post(path, {"condition": condition, "data": {"total": 250}}).json()
    assert body["rule_id"] is None and body["passed"] is False
    lines = body["explanation"].splitlines()
    assert lines[0].startswith("FAIL") and lines[1].strip().startswith("PASS")
    assert "data.who" in lines[2]
    assert [c["passed"] for c in body["result"]["children"]] == [True, False]

    unknown = readonly.post(path, {"condition": {"type": "AlwaysTrue"}, "data": {}})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"].startswith("condition:")
    assert "AlwaysTrue" in unknown.json()["error"]["message"]
    missing = readonly.post(path, {"data": {}})
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == "condition: required"
