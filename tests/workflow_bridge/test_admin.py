"""The tenant admin for workflows, driven like a browser (Django's test client on the tenant's
host, forms read from the page and posted back): workflows with their drawn net, analysis and
versions; resources read-only with history, agent runs and the activities an operator may
fire; rules and agent bindings saved through the services; nothing of one tenant reachable
from another."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from agents.models import Agent
from tenants.audit.models import AuditLog
from tests.agents.conftest import make_agent, make_credential
from tests.agents.test_admin import client_for, form_errors, make_operator, read_form
from tests.agents.test_admin import url as admin_url
from tests.agents.test_operator_permissions import make_user
from tests.workflow_bridge.test_cascade import review_flow
from workflow_bridge.models import (
    ActivityAgent,
    AgentRun,
    Resource,
    ResourceEvent,
    Rule,
    StateAgent,
    Workflow,
    WorkflowVersion,
)
from workflow_bridge.services import activity_fire, resource_create, workflow_save


def url(name: str, *args: Any) -> str:
    # Object ids in admin URLs are quoted the admin's way ("res_5f..." for "res_f..."), the
    # pages' own ones ("fire") included.
    if name.endswith("_fire"):
        return admin_url(name.replace("_fire", "_change"), *args).replace("/change/", "/fire/")
    return admin_url(name, *args)


HOSTILE = '<script>alert("x")</script>'
ESCAPED = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"


def fork_net(slug: str, *, name: str = "Fork and join", split_name: str = "split") -> dict:
    """start → split → (a, b) → join → end; a → fail → stuck (a deadlock: b waits forever);
    island → ferry → end (island never gets a token, so ferry never fires)."""
    return {
        "format": "circuit-breaker/workflow@1",
        "slug": slug,
        "name": name,
        "places": ["start", "a", "b", "end", "stuck", "island"],
        "initial_marking": {"start": 1},
        "transitions": [
            {"id": "split", "name": split_name, "inputs": ["start"], "outputs": ["a", "b"]},
            {"id": "join", "inputs": ["a", "b"], "outputs": ["end"]},
            {"id": "fail", "inputs": ["a"], "outputs": ["stuck"]},
            {"id": "ferry", "inputs": ["island"], "outputs": ["end"]},
        ],
        "final_places": ["end"],
        "rules": [
            {
                "id": "has-total",
                "name": "Has a total",
                "condition": {"type": "FieldExists", "field": "data.total"},
            }
        ],
    }


def save(schema: str, definition: dict) -> Workflow:
    with schema_context(schema):
        return workflow_save(definition=definition, actor="tests", schema_name=schema)


def create(schema: str, workflow: Workflow, data: dict | None = None) -> Resource:
    with schema_context(schema):
        return resource_create(
            workflow=workflow, data=data or {}, metadata={}, actor="tests", schema_name=schema
        )


def fire(schema: str, resource: Resource, activity: str) -> Resource:
    with schema_context(schema):
        return activity_fire(
            resource=Resource.objects.get(pk=resource.pk),
            activity_id=activity,
            data=None,
            actor="tests",
            schema_name=schema,
        ).resource


def slug() -> str:
    return f"wf-{uuid.uuid4().hex[:8]}"


def svg_of(html: str) -> str:
    # The net's drawing (the admin's own pages carry icons as SVG too).
    drawings = re.findall(r'<svg xmlns="[^"]+"[^>]*aria-label="Petri net.*?</svg>', html, re.S)
    assert len(drawings) == 1, f"{len(drawings)} drawings on the page"
    return drawings[0]


def tokens_drawn(svg: str) -> dict[str, int]:
    return {p: int(n) for p, n in re.findall(r'data-place="([^"]+)" data-tokens="(\d+)"', svg)}


@pytest.fixture
def operator(alpha) -> Any:
    return make_operator(alpha.schema)


@pytest.fixture
def browser(alpha, operator) -> Client:
    return client_for(operator, alpha.schema, alpha.host)


@pytest.fixture
def agent(alpha) -> Agent:
    with schema_context(alpha.schema):
        return make_agent(make_credential(kind="echo"), alpha.schema, name="Summariser")


@pytest.fixture
def fork(alpha) -> tuple[Workflow, list[Resource]]:
    """The fork-join net with three resources: two still at the start, one split."""
    workflow = save(alpha.schema, fork_net(slug()))
    resources = [create(alpha.schema, workflow) for _ in range(3)]
    fire(alpha.schema, resources[0], "split")
    return workflow, resources


# ---- an operator finds their way around ----


def test_operator_sees_every_workflow_page(alpha, browser, agent, fork):
    workflow, resources = fork
    with schema_context(alpha.schema):
        state_agent = StateAgent.objects.create(workflow=workflow, place="b", agent=agent)
        activity_agent = ActivityAgent.objects.create(
            workflow=workflow, activity="join", agent=agent
        )
        rule = Rule.objects.get(workflow=workflow, rule_id="has-total")

    pages = {
        url("workflow_bridge_workflow_changelist"): [workflow.slug, "Fork and join"],
        url("workflow_bridge_resource_changelist"): [r.pk for r in resources],
        url("workflow_bridge_rule_changelist"): ["has-total", "Has a total"],
        url("workflow_bridge_stateagent_changelist"): [agent.slug],
        url("workflow_bridge_activityagent_changelist"): [agent.slug, "join"],
        url("workflow_bridge_workflow_change", workflow.pk): [workflow.slug, "user", "<svg"],
        url("workflow_bridge_resource_change", resources[0].pk): [resources[0].pk, "<svg"],
        url("workflow_bridge_rule_change", rule.pk): ["has-total", "data.total"],
        url("workflow_bridge_stateagent_change", state_agent.pk): [agent.name],
        url("workflow_bridge_activityagent_change", activity_agent.pk): [agent.name],
        "/admin/": ["Workflows", "/admin/workflow_bridge/workflow/"],
    }
    for page, expected in pages.items():
        response = browser.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        for text in expected:
            assert text in html, (page, text)

    # The list counts each workflow's resources.
    listing = browser.get(url("workflow_bridge_workflow_changelist")).content.decode()
    assert re.search(r'class="field-resource_total">3<', listing), listing


def test_workflow_page_shows_versions_and_the_analysis_in_words(alpha, browser, fork):
    workflow, _ = fork
    html = browser.get(url("workflow_bridge_workflow_change", workflow.pk)).content.decode()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#x27;", "'")
    assert "bounded yes: no place can collect tokens without limit" in text
    assert "reachable markings 4" in text
    # The deadlock, with the firings that lead to it and where the tokens are stuck.
    assert "deadlocks after split → fail: stuck in b: 1, stuck: 1" in text
    assert "proper ends split → join" in text
    assert "dead transitions ferry" in text and "places never marked island" in text
    assert "Transition 'ferry' can never fire." in text
    # The version history: one version, by whom, its definition at hand.
    assert "Workflow versions" in html
    assert re.search(r'<td class="field-created_by">\s*<p>tests</p>', html), "no version row"


def test_a_viewer_sees_the_workflow_read_only(alpha, fork):
    workflow, _ = fork
    viewer = client_for(
        make_user(alpha.schema, "wf-viewer", "workflow_bridge.view_workflow"),
        alpha.schema,
        alpha.host,
    )
    page = url("workflow_bridge_workflow_change", workflow.pk)
    response = viewer.get(page)
    assert response.status_code == 200
    html = response.content.decode()
    assert svg_of(html) and "dead transitions" in html
    assert 'name="definition"' not in html and "&quot;initial_marking&quot;" in html
    assert viewer.post(page, {"definition": "{}"}).status_code == 403


# ---- the diagram ----


def test_diagram_is_inline_svg_with_every_node_and_the_summed_tokens(alpha, browser, fork):
    workflow, _ = fork
    html = browser.get(url("workflow_bridge_workflow_change", workflow.pk)).content.decode()
    svg = svg_of(html)
    for place in ("start", "a", "b", "end", "stuck", "island"):
        assert f'data-place="{place}"' in svg, place
    for transition in ("split", "join", "fail", "ferry"):
        assert f'data-transition="{transition}"' in svg, transition
    # Two resources at the start, one split into a and b.
    assert tokens_drawn(svg) == {
        "start": 2,
        "a": 1,
        "b": 1,
        "end": 0,
        "stuck": 0,
        "island": 0,
    }
    # Drawn on the server: no script, no stylesheet, nothing fetched from elsewhere.
    assert "<script" not in svg and "<style" not in svg
    assert not re.search(r'(?:href|src)="(?:https?:)?//', html), "an external asset"

    # A resource's own drawing shows its own tokens, its marked places outlined.
    _, resources = fork
    page = browser.get(url("workflow_bridge_resource_change", resources[0].pk)).content.decode()
    own = svg_of(page)
    assert tokens_drawn(own)["a"] == 1 and tokens_drawn(own)["start"] == 0
    assert re.search(r'data-place="a"[^>]*>\s*<title>[^<]*</title>\s*<circle[^>]*#d97706', own)


# ---- nothing a tenant wrote runs in an operator's browser ----


def test_hostile_names_and_data_are_escaped_on_every_page(alpha, browser, agent):
    definition = fork_net(slug(), name=HOSTILE, split_name=HOSTILE)
    definition["rules"][0]["name"] = HOSTILE
    workflow = save(alpha.schema, definition)
    resource = create(alpha.schema, workflow, data={"note": HOSTILE})
    with schema_context(alpha.schema):
        binding = StateAgent.objects.create(workflow=workflow, place="a", agent=agent)
        rule = Rule.objects.get(workflow=workflow)
    pages = [
        url("workflow_bridge_workflow_changelist"),
        url("workflow_bridge_workflow_change", workflow.pk),
        url("workflow_bridge_resource_changelist"),
        url("workflow_bridge_resource_change", resource.pk),
        url("workflow_bridge_rule_changelist"),
        url("workflow_bridge_rule_change", rule.pk),
        url("workflow_bridge_stateagent_change", binding.pk),
    ]
    for page in pages:
        response = browser.get(page)
        assert response.status_code == 200, page
        assert "<script>alert" not in response.content.decode(), page
    # Where the pages show what the tenant wrote, it is there, as text.
    shown = {
        url("workflow_bridge_workflow_changelist"): 1,
        url("workflow_bridge_workflow_change", workflow.pk): 5,  # name, drawing, definition
        url("workflow_bridge_resource_change", resource.pk): 4,  # data, drawing, activity
        url("workflow_bridge_rule_changelist"): 1,
        url("workflow_bridge_rule_change", rule.pk): 1,
    }
    for page, least in shown.items():
        html = browser.get(page).content.decode()
        assert html.count("&lt;script&gt;alert(") >= least, (page, html.count("&lt;script"))

    # The workflow's page: its name, the transition's name in the drawing (and the
    # activity's, next to the resource), the rule's name in the definition.
    html = browser.get(url("workflow_bridge_workflow_change", workflow.pk)).content.decode()
    assert ESCAPED in svg_of(html)
    html = browser.get(url("workflow_bridge_resource_change", resource.pk)).content.decode()
    assert f"Fire {ESCAPED}" in html

    # Place ids cannot carry markup at all: the net refuses them, and says so on the form.
    form = read_form(browser.get(url("workflow_bridge_workflow_add")), "workflow_form")
    bad = fork_net(slug())
    bad["places"].append(HOSTILE)
    form["definition"] = json.dumps(bad)
    response = browser.post(url("workflow_bridge_workflow_add"), form)
    assert response.status_code == 200
    errors = form_errors(response)
    assert list(errors) == ["definition"] and "is not a valid id" in errors["definition"][0]
    assert "<script>alert" not in response.content.decode()


# ---- definitions edited as JSON: errors on the form, nothing stored ----


def test_editing_a_definition_with_an_error_shows_it_and_stores_nothing(alpha, browser, fork):
    workflow, _ = fork
    change = url("workflow_bridge_workflow_change", workflow.pk)

    def post(text: str) -> Any:
        form = read_form(browser.get(change), "workflow_form")
        form["definition"] = text
        return browser.post(change, form)

    good = fork_net(workflow.slug)
    broken_arc = json.loads(json.dumps(good))
    broken_arc["transitions"][1]["inputs"] = "a"
    no_start = json.loads(json.dumps(good))  # resources hold tokens in "start"
    no_start["places"].remove("start")
    no_start["initial_marking"] = {"a": 1}
    no_start["transitions"] = no_start["transitions"][1:]
    bad_rule = json.loads(json.dumps(good))
    bad_rule["rules"][0]["condition"] = {"type": "AlwaysTrue"}
    other = save(alpha.schema, fork_net(slug()))
    taken_slug = {**good, "slug": other.slug}
    for text, expected in (
        ("{not json", "definition: not valid JSON"),
        (json.dumps(broken_arc), "transitions[1].inputs:"),
        (json.dumps(no_start), "places: 'start' holds tokens of resource"),
        (json.dumps(bad_rule), "rules[0].condition:"),
        (json.dumps({**good, "colour": "red"}), "colour: unknown field"),
        (json.dumps(taken_slug), "slug: a workflow"),
    ):
        response = post(text)
        assert response.status_code == 200, text
        errors = form_errors(response)
        assert list(errors) == ["definition"], errors
        assert errors["definition"][0].startswith(expected), errors
        # The operator's text is given back to fix, not replaced by the stored one.
        assert read_form(response, "workflow_form")["definition"] == text
    with schema_context(alpha.schema):
        workflow.refresh_from_db()
        assert workflow.version == 1 and workflow.definition == good
        assert WorkflowVersion.objects.filter(workflow=workflow).count() == 1
        assert Rule.objects.filter(workflow=workflow).count() == 1

    # A good change is stored as the next version, by the operator.
    response = post(json.dumps({**good, "name": "Renamed"}))
    assert response.status_code == 302, form_errors(response)
    with schema_context(alpha.schema):
        workflow.refresh_from_db()
        assert workflow.version == 2 and workflow.name == "Renamed"
        latest = WorkflowVersion.objects.get(workflow=workflow, version=2)
        assert latest.created_by == "user:operator"


def test_adding_a_workflow_stores_its_first_version(alpha, browser):
    form = read_form(browser.get(url("workflow_bridge_workflow_add")), "workflow_form")
    json.loads(form["definition"])  # the page offers an example to start from
    new = slug()
    form["definition"] = json.dumps(review_flow(new))
    response = browser.post(url("workflow_bridge_workflow_add"), form)
    assert response.status_code == 302, form_errors(response)
    with schema_context(alpha.schema):
        workflow = Workflow.objects.get(slug=new)
        assert response["Location"] == url("workflow_bridge_workflow_changelist")
        assert workflow.version == 1 and workflow.created_by == "user:operator"
        assert Rule.objects.filter(workflow=workflow, rule_id="has-summary").exists()
        assert AuditLog.objects.filter(action="workflow.create", target_id=workflow.pk).exists()


# ---- resources: read-only, moved by firing activities ----


def test_firing_an_available_activity_from_the_resource_page_moves_it(alpha, browser):
    workflow = save(alpha.schema, review_flow(slug()))
    resource = create(alpha.schema, workflow)
    page = url("workflow_bridge_resource_change", resource.pk)
    html = browser.get(page).content.decode()
    # Every activity, with why it may (not) fire; buttons for those that may.
    assert 'data-activity="checked"' in html and "draft" in html
    assert 'value="submit"' in html and 'value="checked"' not in html

    form = read_form(browser.get(page), "fire_form")
    form.update(activity="submit", data='{"note": "from the admin"}')
    response = browser.post(url("workflow_bridge_resource_fire", resource.pk), form, follow=True)
    assert response.redirect_chain[-1][0] == page
    assert "Fired “submit”: now summarising." in response.content.decode()
    with schema_context(alpha.schema):
        resource.refresh_from_db()
        assert resource.state == "summarising" and resource.data == {"note": "from the admin"}
        entry = resource.history.order_by("-seq").first()
        assert (entry.kind, entry.actor, entry.activity) == ("activity", "user:operator", "submit")
        assert entry.to_marking == {"summarising": 1}

    # An activity that may not fire now is refused with the reason; nothing moves.
    form = read_form(browser.get(page), "fire_form")
    form["activity"] = "submit"
    response = browser.post(url("workflow_bridge_resource_fire", resource.pk), form, follow=True)
    assert "cannot fire now" in response.content.decode()
    form["data"] = "{broken"
    response = browser.post(url("workflow_bridge_resource_fire", resource.pk), form, follow=True)
    assert "not valid JSON" in response.content.decode()
    with schema_context(alpha.schema):
        resource.refresh_from_db()
        assert resource.state == "summarising" and resource.version == 2
    assert browser.get(url("workflow_bridge_resource_fire", resource.pk)).status_code == 405


def test_firing_needs_the_pages_csrf_token(alpha, operator):
    workflow = save(alpha.schema, review_flow(slug()))
    resource = create(alpha.schema, workflow)
    browser = Client(HTTP_HOST=alpha.host, enforce_csrf_checks=True)
    with schema_context(alpha.schema):
        browser.force_login(operator)
    fire_url = url("workflow_bridge_resource_fire", resource.pk)
    assert browser.post(fire_url, {"activity": "submit"}).status_code == 403  # forged
    with schema_context(alpha.schema):
        resource.refresh_from_db()
        assert resource.state == "draft"
    form = read_form(browser.get(url("workflow_bridge_resource_change", resource.pk)), "fire_form")
    form["activity"] = "submit"
    assert browser.post(fire_url, form).status_code == 302
    with schema_context(alpha.schema):
        resource.refresh_from_db()
        assert resource.state == "summarising"


def test_firing_needs_the_run_permission(alpha):
    workflow = save(alpha.schema, review_flow(slug()))
    resource = create(alpha.schema, workflow)
    page = url("workflow_bridge_resource_change", resource.pk)
    fire_url = url("workflow_bridge_resource_fire", resource.pk)
    # May look (view permissions, read-only role) but not run.
    watcher = client_for(
        make_user(
            alpha.schema, "watcher", "agents.view_execution", "workflow_bridge.view_resource"
        ),
        alpha.schema,
        alpha.host,
    )
    response = watcher.get(page)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="fire_form"' not in html and "needs the permission to run workflows" in html
    assert watcher.post(fire_url, {"activity": "submit"}).status_code == 403
    # Staff with the resource's view permission but no agents role at all: refused too.
    viewer = client_for(
        make_user(alpha.schema, "viewer", "workflow_bridge.view_resource"),
        alpha.schema,
        alpha.host,
    )
    assert viewer.post(fire_url, {"activity": "submit"}).status_code == 403
    with schema_context(alpha.schema):
        resource.refresh_from_db()
        assert resource.state == "draft" and resource.history.count() == 1

    # "Can run agents" gives the user role, which may run workflows.
    runner = client_for(
        make_user(alpha.schema, "runner", "agents.run_agent", "workflow_bridge.view_resource"),
        alpha.schema,
        alpha.host,
    )
    assert 'id="fire_form"' in runner.get(page).content.decode()
    assert runner.post(fire_url, {"activity": "submit"}).status_code == 302
    with schema_context(alpha.schema):
        resource.refresh_from_db()
        assert resource.state == "summarising"
        assert resource.history.order_by("-seq").first().actor == "user:runner"


def test_history_and_agent_runs_cannot_be_edited_or_deleted(alpha, browser, agent):
    workflow = save(alpha.schema, review_flow(slug()))
    resource = create(alpha.schema, workflow)
    resource = fire(alpha.schema, resource, "submit")
    with schema_context(alpha.schema):
        AgentRun.objects.create(
            execution_id="exec_" + uuid.uuid4().hex,
            resource=resource,
            place="summarising",
            resource_version=resource.version,
            trigger="entered",
            status=AgentRun.Status.APPLIED,
        )
        before = list(ResourceEvent.objects.filter(resource=resource).values())
    page = url("workflow_bridge_resource_change", resource.pk)
    html = browser.get(page).content.decode()
    # Read-only: the history and runs are shown, with no field, checkbox or save button.
    assert "summarising" in html and "user:operator" not in html
    assert "/admin/agents/execution/exec_5F" in html  # the run links to its execution
    # (Only the hidden row ids Django's formsets always carry.)
    assert not re.search(r'name="(?:history|agent_runs)-\d+-(?!id"|resource")', html)
    assert 'name="_save"' not in html

    tampering = {
        "history-TOTAL_FORMS": "1",
        "history-INITIAL_FORMS": "1",
        "history-0-id": str(before[0]["id"]),
        "history-0-kind": "forged",
        "history-0-DELETE": "on",
        "marking": '{"done": 1}',
    }
    assert browser.post(page, tampering).status_code == 403
    assert browser.post(url("workflow_bridge_resource_delete", resource.pk)).status_code == 403
    assert browser.get(url("workflow_bridge_resource_add")).status_code == 403
    # History entries and agent runs have no admin pages of their own.
    for path in ("/admin/workflow_bridge/resourceevent/", "/admin/workflow_bridge/agentrun/"):
        assert browser.get(path).status_code == 404, path
    with schema_context(alpha.schema):
        assert list(ResourceEvent.objects.filter(resource=resource).values()) == before
        resource.refresh_from_db()
        assert resource.state == "summarising"
        assert AgentRun.objects.filter(resource=resource).count() == 1


def test_resources_filter_by_workflow_and_place(alpha, browser, fork):
    workflow, resources = fork
    other = save(alpha.schema, review_flow(slug()))
    elsewhere = create(alpha.schema, other)
    listing = url("workflow_bridge_resource_changelist")

    def listed(query: str) -> set[str]:
        html = browser.get(f"{listing}?{query}").content.decode()
        ids = {r.pk for r in [*resources, elsewhere]}
        return {i for i in ids if f">{i}<" in html}

    assert listed(f"workflow__id__exact={workflow.pk}") == {r.pk for r in resources}
    assert listed("place=a") == {resources[0].pk}
    assert listed("place=draft") == {elsewhere.pk}
    assert listed(f"workflow__id__exact={workflow.pk}&place=start") == {
        resources[1].pk,
        resources[2].pk,
    }
    # The place filter offers the places that hold tokens.
    html = browser.get(f"{listing}?workflow__id__exact={workflow.pk}").content.decode()
    assert "?place=b&amp;workflow__id__exact=" in html or "place=b" in html


# ---- rules: every change a version ----


def test_rule_change_stores_a_new_version_and_bad_conditions_are_refused(alpha, browser, fork):
    workflow, _ = fork
    with schema_context(alpha.schema):
        first = Rule.objects.get(workflow=workflow, rule_id="has-total")
    change = url("workflow_bridge_rule_change", first.pk)

    form = read_form(browser.get(change), "rule_form")
    form["condition"] = '{"type": "Sometimes"}'
    response = browser.post(change, form)
    assert response.status_code == 200
    errors = form_errors(response)
    assert list(errors) == ["condition"] and "Sometimes" in errors["condition"][0], errors

    form["condition"] = '{"type": "FieldGreaterThan", "field": "data.total", "value": 10}'
    response = browser.post(change, form)
    assert response.status_code == 302, form_errors(response)
    with schema_context(alpha.schema):
        versions = list(Rule.objects.filter(workflow=workflow, rule_id="has-total"))
        assert [v.version for v in versions] == [2, 1]
        assert versions[0].condition["type"] == "FieldGreaterThan"
        assert versions[0].created_by == "user:operator"
        first.refresh_from_db()
        assert first.condition == {"type": "FieldExists", "field": "data.total"}
    html = browser.get(change).content.decode()
    assert ">v2<" in html and ">v1<" in html

    # A new rule through the add form; a rule id that is not a slug is refused on its field.
    add = url("workflow_bridge_rule_add")
    form = read_form(browser.get(add), "rule_form")
    form.update(workflow=workflow.pk, rule_id="Not A Slug")
    response = browser.post(add, form)
    assert response.status_code == 200 and "rule_id" in form_errors(response)
    form["rule_id"] = "has-note"
    response = browser.post(add, form)
    assert response.status_code == 302, form_errors(response)
    with schema_context(alpha.schema):
        assert Rule.objects.get(workflow=workflow, rule_id="has-note").version == 1
    assert browser.post(url("workflow_bridge_rule_delete", first.pk)).status_code == 403


# ---- agent bindings: the services' checks, on the form ----


def test_binding_to_a_place_that_is_never_marked_shows_the_reason(alpha, browser, agent, fork):
    workflow, _ = fork
    add = url("workflow_bridge_stateagent_add")

    def post(**fields: str) -> Any:
        form = read_form(browser.get(add), "stateagent_form")
        form.update(workflow=workflow.pk, agent=str(agent.pk), **fields)
        return browser.post(add, form)

    response = post(place="island")
    assert response.status_code == 200
    errors = form_errors(response)
    assert list(errors) == ["place"], errors
    assert "'island' can never be marked" in errors["place"][0]
    for fields, field, reason in (
        ({"place": "nowhere"}, "place", "is not a place of this workflow"),
        ({"place": "a", "auto_activity": "split"}, "auto_activity", "does not start from 'a'"),
        ({"place": "a", "output_mapping": '{"status": "output"}'}, "output_mapping", "data."),
        ({"place": "a", "trigger_rules": '["no-such"]'}, "trigger_rules", "no rule 'no-such'"),
        ({"place": "a", "retry": '{"max_retries": 2}'}, "retry", "retry.max_retries: unknown"),
        ({"place": "a", "parameters": '{"temperature": 9}'}, "parameters", "between 0 and 2"),
    ):
        errors = form_errors(post(**fields))
        assert list(errors) == [field] and reason in errors[field][0], (fields, errors)
    with schema_context(alpha.schema):
        assert not StateAgent.objects.filter(workflow=workflow).exists()

    response = post(place="a", auto_activity="join", output_mapping='{"data.s": "output"}')
    assert response.status_code == 302, form_errors(response)
    with schema_context(alpha.schema):
        binding = StateAgent.objects.get(workflow=workflow)
        assert (binding.place, binding.auto_activity) == ("a", "join")
    # The same agent twice on one place is refused with the reason.
    errors = form_errors(post(place="a"))
    assert errors == {"__all__": [f"agent {agent.slug!r} is already bound to 'a'"]}, errors

    # Changing it runs the same checks; the workflow stays the binding's.
    change = url("workflow_bridge_stateagent_change", binding.pk)
    form = read_form(browser.get(change), "stateagent_form")
    form["place"] = "island"
    errors = form_errors(browser.post(change, form))
    assert list(errors) == ["place"], errors
    form.update(place="b", auto_activity="")
    assert browser.post(change, form).status_code == 302
    with schema_context(alpha.schema):
        binding.refresh_from_db()
        assert binding.place == "b"
    assert browser.post(url("workflow_bridge_stateagent_delete", binding.pk)).status_code == 403


def test_activity_agent_binding_checks_the_activity(alpha, browser, agent, fork):
    workflow, _ = fork
    add = url("workflow_bridge_activityagent_add")
    form = read_form(browser.get(add), "activityagent_form")
    form.update(workflow=workflow.pk, agent=str(agent.pk), activity="teleport")
    errors = form_errors(browser.post(add, form))
    assert list(errors) == ["activity"] and "no activity 'teleport'" in errors["activity"][0]
    form["activity"] = "join"
    assert browser.post(add, form).status_code == 302
    with schema_context(alpha.schema):
        assert ActivityAgent.objects.get(workflow=workflow).activity == "join"


# ---- deleting ----


def test_a_workflow_with_resources_cannot_be_deleted(alpha, browser, fork):
    workflow, _ = fork
    delete = url("workflow_bridge_workflow_delete", workflow.pk)
    response = browser.post(delete, {"post": "yes"}, follow=True)
    assert response.redirect_chain[-1][0] == url("workflow_bridge_workflow_change", workflow.pk)
    assert "has 3 resources and cannot be deleted" in response.content.decode()
    with schema_context(alpha.schema):
        assert Workflow.objects.filter(pk=workflow.pk).exists()

    empty = save(alpha.schema, review_flow(slug()))
    response = browser.post(url("workflow_bridge_workflow_delete", empty.pk), {"post": "yes"})
    assert response.status_code == 302
    with schema_context(alpha.schema):
        assert not Workflow.objects.filter(pk=empty.pk).exists()
        assert AuditLog.objects.filter(action="workflow.delete", target_id=empty.pk).exists()


# ---- tenants never see each other ----


def test_another_tenants_operator_gets_404_for_every_admin_url(alpha, bravo, agent, fork):
    workflow, resources = fork
    resource = resources[0]
    with schema_context(alpha.schema):
        state_agent = StateAgent.objects.create(workflow=workflow, place="b", agent=agent)
        activity_agent = ActivityAgent.objects.create(
            workflow=workflow, activity="join", agent=agent
        )
        rule = Rule.objects.get(workflow=workflow)
    bravo_browser = client_for(make_operator(bravo.schema, "bravo-op"), bravo.schema, bravo.host)

    gets = [
        url("workflow_bridge_workflow_change", workflow.pk),
        url("workflow_bridge_workflow_history", workflow.pk),
        url("workflow_bridge_workflow_delete", workflow.pk),
        url("workflow_bridge_resource_change", resource.pk),
        url("workflow_bridge_resource_history", resource.pk),
        url("workflow_bridge_rule_change", rule.pk),
        url("workflow_bridge_stateagent_change", state_agent.pk),
        url("workflow_bridge_activityagent_change", activity_agent.pk),
    ]
    for page in gets:
        response = bravo_browser.get(page)
        assert response.status_code == 404, page
        assert workflow.slug not in response.content.decode(), page
    posts = [
        url("workflow_bridge_resource_fire", resource.pk),
        url("workflow_bridge_workflow_change", workflow.pk),
        url("workflow_bridge_workflow_delete", workflow.pk),
        url("workflow_bridge_stateagent_change", state_agent.pk),
    ]
    for page in posts:
        assert bravo_browser.post(page, {"activity": "join", "post": "yes"}).status_code == 404
    for listing in (
        "workflow_bridge_workflow_changelist",
        "workflow_bridge_resource_changelist",
        "workflow_bridge_rule_changelist",
        "workflow_bridge_stateagent_changelist",
    ):
        html = bravo_browser.get(url(listing)).content.decode()
        assert workflow.slug not in html and resource.pk not in html, listing
    with schema_context(alpha.schema):
        assert Workflow.objects.filter(pk=workflow.pk).exists()
        resource.refresh_from_db()
        assert resource.marking == {"a": 1, "b": 1}
