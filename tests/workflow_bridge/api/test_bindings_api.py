"""Agent bindings over REST: state agents and activity agents, created, read, changed and
removed; every refusal is a 400 (or 409) naming the field and saying why."""

from __future__ import annotations

from django_tenants.utils import schema_context

from tenants.audit.models import AuditLog
from tests.workflow_bridge.api.conftest import create_workflow, new_slug, patch
from tests.workflow_bridge.test_cascade import review_flow
from workflow_bridge.models import ActivityAgent, StateAgent


def test_state_agent_binding_lifecycle(admin, readonly, workflow, echo_agent):
    path = f"/workflows/{workflow['id']}/state-agents"
    created = admin.post(
        path,
        {
            "place": "summarising",
            "agent": echo_agent.slug,
            "input_mapping": {"message": "data.document"},
            "output_mapping": {"data.summary": "output"},
            "auto_activity": "summarised",
            "trigger_rules": ["has-summary"],
            "parameters": {"temperature": 0.2},
        },
    )
    assert created.status_code == 201, created.content
    binding = created.json()
    assert created["Location"] == f"{path}/{binding['id']}"
    assert binding["agent"] == echo_agent.slug and binding["agent_id"] == echo_agent.id
    assert binding["place"] == "summarising" and binding["auto_activity"] == "summarised"
    assert binding["merge_policy"] == "exclusive" and binding["enabled"] is True
    assert binding["parameters"] == {"temperature": 0.2}
    assert binding["workflow_id"] == workflow["id"]

    assert readonly.get(path).json() == {"workflow_id": workflow["id"], "state_agents": [binding]}
    assert readonly.get(f"{path}/{binding['id']}").json() == binding

    changed = patch(
        admin, f"{path}/{binding['id']}", {"enabled": False, "merge_policy": "commutative"}
    )
    assert changed.status_code == 200
    body = changed.json()
    assert body["enabled"] is False and body["merge_policy"] == "commutative"
    assert body["auto_activity"] == "summarised"  # untouched fields stay

    assert admin.delete(f"{path}/{binding['id']}").status_code == 204
    assert readonly.get(f"{path}/{binding['id']}").status_code == 404
    assert readonly.get(path).json()["state_agents"] == []


def test_binding_to_an_unreachable_place_is_refused_with_the_reason(admin, echo_agent):
    definition = review_flow(new_slug())
    definition["states"].append("limbo")  # nothing leads there
    workflow = create_workflow(admin, definition)
    response = admin.post(
        f"/workflows/{workflow['id']}/state-agents", {"place": "limbo", "agent": echo_agent.slug}
    )
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("place:")
    assert "can never be marked" in message and "would never run" in message


def test_state_agent_refusals_name_the_field(admin, workflow, echo_agent, alpha):
    path = f"/workflows/{workflow['id']}/state-agents"
    good = {"place": "summarising", "agent": echo_agent.slug}
    cases = [
        ({**good, "place": "nowhere"}, "place"),
        ({**good, "agent": "no-such-agent"}, "agent"),
        ({"place": "summarising"}, "agent"),
        ({**good, "trigger_rules": ["no-such-rule"]}, "trigger_rules"),
        ({**good, "auto_activity": "submit"}, "auto_activity"),  # does not start there
        ({**good, "output_mapping": {"summary": "output"}}, "output_mapping"),
        ({**good, "merge_policy": "whatever"}, "merge_policy"),
        ({**good, "enabled": "yes"}, "enabled"),
        ({**good, "max_executions": 0}, "max_executions"),
        ({**good, "parameters": {"temperature": 99}}, "parameters"),
        ({**good, "colour": "red"}, "colour"),
        ([good], "body"),
    ]
    for body, field in cases:
        response = admin.post(path, body)
        assert response.status_code == 400, (body, response.content)
        assert response.json()["error"]["message"].startswith(f"{field}"), (body, response.json())
    assert admin.post(path, good).status_code == 201
    again = admin.post(path, good)
    assert again.status_code == 409 and "already bound" in again.json()["error"]["message"]
    with schema_context(alpha.schema):
        assert StateAgent.objects.count() == 1


def test_a_patch_cannot_collide_with_another_binding(admin, workflow, echo_agent):
    path = f"/workflows/{workflow['id']}/state-agents"
    first = admin.post(path, {"place": "summarising", "agent": echo_agent.slug}).json()
    second = admin.post(path, {"place": "checking", "agent": echo_agent.slug}).json()
    collide = patch(admin, f"{path}/{second['id']}", {"place": "summarising"})
    assert collide.status_code == 409
    assert patch(admin, f"{path}/{first['id']}", {}).status_code == 400  # nothing to change
    unknown = patch(admin, f"{path}/{first['id']}", {"workflow": "x"})
    assert unknown.status_code == 400 and unknown.json()["error"]["message"].startswith("workflow")


def test_binding_ids_that_are_not_bindings_are_404(admin, readonly, workflow):
    for suffix in ("999999", "abc", "-1", "99999999999999999999999"):
        for kind in ("state-agents", "activity-agents"):
            path = f"/workflows/{workflow['id']}/{kind}/{suffix}"
            assert readonly.get(path).status_code == 404
            assert patch(admin, path, {"enabled": False}).status_code == 404
            assert admin.delete(path).status_code == 404
    assert readonly.get("/workflows/nope/state-agents").status_code == 404
    assert readonly.get("/workflows/nope/activity-agents").status_code == 404


def test_activity_agent_binding_lifecycle(admin, readonly, workflow, echo_agent, alpha):
    path = f"/workflows/{workflow['id']}/activity-agents"
    created = admin.post(path, {"activity": "submit", "agent": echo_agent.id, "required": False})
    assert created.status_code == 201
    binding = created.json()
    assert binding["agent"] == echo_agent.slug and binding["required"] is False
    assert binding["activity"] == "submit"
    assert readonly.get(path).json()["activity_agents"] == [binding]
    assert readonly.get(f"{path}/{binding['id']}").json() == binding
    changed = patch(admin, f"{path}/{binding['id']}", {"required": True})
    assert changed.status_code == 200 and changed.json()["required"] is True
    for body, field in (
        ({"activity": "nope", "agent": echo_agent.slug}, "activity"),
        ({"activity": "submit", "agent": "nope"}, "agent"),
        ({"activity": "submit", "agent": echo_agent.slug, "required": 1}, "required"),
        ({"activity": "submit", "agent": echo_agent.slug, "place": "x"}, "place"),
    ):
        response = admin.post(path, body)
        assert response.status_code == 400, body
        assert response.json()["error"]["message"].startswith(field)
    again = admin.post(path, {"activity": "submit", "agent": echo_agent.slug})
    assert again.status_code == 409
    assert admin.delete(f"{path}/{binding['id']}").status_code == 204
    with schema_context(alpha.schema):
        assert not ActivityAgent.objects.exists()


def test_only_admins_change_bindings(admin, user, readonly, workflow, echo_agent, alpha):
    state = admin.post(
        f"/workflows/{workflow['id']}/state-agents",
        {"place": "summarising", "agent": echo_agent.slug},
    ).json()
    activity = admin.post(
        f"/workflows/{workflow['id']}/activity-agents",
        {"activity": "submit", "agent": echo_agent.slug},
    ).json()
    for client in (user, readonly):
        for kind, binding, body in (
            ("state-agents", state, {"place": "checking", "agent": echo_agent.slug}),
            ("activity-agents", activity, {"activity": "redo", "agent": echo_agent.slug}),
        ):
            path = f"/workflows/{workflow['id']}/{kind}"
            assert client.get(path).status_code == 200
            assert client.get(f"{path}/{binding['id']}").status_code == 200
            assert client.post(path, body).status_code == 403
            assert patch(client, f"{path}/{binding['id']}", {"enabled": False}).status_code == 403
            assert client.delete(f"{path}/{binding['id']}").status_code == 403
    with schema_context(alpha.schema):
        assert (
            AuditLog.objects.filter(
                action="permission.denied", details__permission="workflows.write"
            ).count()
            == 12
        )
        assert StateAgent.objects.get().enabled and ActivityAgent.objects.get().enabled
