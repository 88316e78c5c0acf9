"""The workflow event log: every history entry is an event of its resource's and its
workflow's log, named as the original system named them, numbered per resource and per
workflow in commit order (a follower's cursor never skips one), and put in the NATS outbox in
the same transaction only while NATS_URL is set."""

from __future__ import annotations

import ast
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django_tenants.utils import schema_context

from tests.worker.conftest import wait_for
from tests.workflow_bridge.events.conftest import Review, expected_cascade
from tests.workflow_bridge.test_cascade import review_flow
from workflow_bridge import bridge
from workflow_bridge.events import event_type, read_resource_events, read_workflow_events
from workflow_bridge.history import record
from workflow_bridge.models import ActivityAgent, EventOutbox, Resource, StateAgent
from workflow_bridge.nats import agent_subject, subject_token, workflow_subject
from workflow_bridge.services import activity_fire, resource_create, workflow_save

ROOT = Path(__file__).resolve().parents[3]
# Every kind the bridge records, with its event type and its NATS subject group.
KINDS = {
    "created": ("resource_created", "lifecycle"),
    "activity": ("resource_activity_executed", "activities"),
    "activity_pending": ("activity_pending", "activities"),
    "activity_failed": ("activity_failed", "activities"),
    "auto_activity_refused": ("auto_activity_refused", "activities"),
    "agent_triggered": ("agent_triggered", "agents"),
    "agent_result": ("agent_result", "agents"),
    "agent_failed": ("agent_failed", "agents"),
    "agent_result_not_applied": ("agent_result_not_applied", "agents"),
    "agent_skipped": ("agent_skipped", "agents"),
    "agent_refused": ("agent_refused", "agents"),
    "cascade_stopped": ("cascade_stopped", "agents"),
}


def _recorded_kinds() -> set[str]:
    """The ``kind=`` of every ``record(...)`` call in workflow_bridge."""
    kinds = set()
    for path in (ROOT / "workflow_bridge").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "record"
            ):
                for keyword in node.keywords:
                    if keyword.arg == "kind" and isinstance(keyword.value, ast.Constant):
                        kinds.add(keyword.value.value)
    return kinds


def test_every_recorded_kind_is_an_event_with_its_subject() -> None:
    # A new kind of history entry must be named here: its event type and NATS subject.
    assert _recorded_kinds() == set(KINDS)
    for kind, (name, group) in KINDS.items():
        assert event_type(kind) == name
        assert workflow_subject("review", name) == f"cb.workflows.review.events.{group}"


def test_subject_tokens_are_sanitised() -> None:
    assert subject_token("my flow.v2>*") == "my_flow_v2__"
    assert subject_token("") == "_"
    assert workflow_subject("a.b c", "resource_created") == "cb.workflows.a_b_c.events.lifecycle"
    assert agent_subject("acme corp", "sum.mariser*") == "cb.agent.execute.acme_corp.sum_mariser_"


# ---- a cascade in a worker ----


def test_a_cascade_records_each_step_on_the_resource_and_workflow_logs(
    review: Review, spawn_worker: Any
) -> None:
    review.script()
    spawn_worker()
    first, second = review.create("First text."), review.create("Second text.")
    review.submit(first)
    wait_for(lambda: review.state(first) == "done", 20, "the first cascade")
    review.submit(second)
    wait_for(lambda: review.state(second) == "done", 20, "the second cascade")

    events = review.events(first)
    assert [e.type for e in events] == expected_cascade()
    assert [e.seq for e in events] == list(range(1, 9))
    created, submitted, triggered = events[0].payload, events[1].payload, events[2].payload
    assert created["kind"] == "created" and created["from_marking"] == {}
    assert created["to_state"] == "draft" and created["data"]["data"] == {"document": "First text."}
    assert created["workflow_slug"] == review.workflow.slug
    assert created["workflow_id"] == review.workflow.pk and created["resource_id"] == first.pk
    assert submitted["activity"] == "submit" and submitted["actor"] == "tests"
    assert (submitted["from_state"], submitted["to_state"]) == ("draft", "summarising")
    assert triggered["execution_id"] and triggered["data"]["place"] == "summarising"
    assert triggered["actor"] == "workflow"
    assert events[-1].payload["to_state"] == "done"
    assert all(e.payload["timestamp"] for e in events)

    # The workflow's log: both resources' events, numbered 1..n in the order they committed.
    everything = review.workflow_events()
    assert [e.workflow_seq for e in everything] == list(range(1, 17))
    assert [e.payload["resource_id"] for e in everything[:2]] == [first.pk, second.pk]
    for resource in (first, second):
        mine = [e for e in everything if e.payload["resource_id"] == resource.pk]
        assert [e.seq for e in mine] == list(range(1, 9))  # each resource's own order kept
    # The second resource was submitted once the first had finished: its steps come after.
    assert [e.payload["resource_id"] for e in everything[2:9]] == [first.pk] * 7


def test_failing_agents_record_their_failures(
    review: Review, spawn_worker: Any, fake_llm: Any
) -> None:
    with schema_context(review.schema):
        binding = StateAgent.objects.get(workflow=review.workflow, place="summarising")
        ActivityAgent.objects.create(
            workflow=review.workflow, activity="submit", agent=binding.agent
        )
        binding.delete()
    fake_llm.script(review.summariser_key, {"status": 401, "message": "no"})
    resource = review.create()
    review.submit(resource)  # waits for its activity agent, which fails
    spawn_worker()
    wait_for(lambda: review.events(resource)[-1].type == "activity_failed", 20, "the firing failed")
    assert [e.type for e in review.events(resource)] == [
        "resource_created",
        "activity_pending",
        "agent_triggered",
        "activity_failed",
    ]
    failed = review.events(resource)[-1].payload
    assert failed["activity"] == "submit" and "failed" in failed["data"]["why"]


# ---- kinds recorded without running an agent ----


@pytest.fixture
def flow(in_alpha: Any) -> Any:
    from tests.agents.conftest import make_agent, make_credential

    workflow = workflow_save(
        definition=review_flow("events-flow"), actor="tests", schema_name=in_alpha.schema
    )
    agent = make_agent(make_credential(), in_alpha.schema)
    return in_alpha.schema, workflow, agent


def _submitted(schema: str, workflow: Any) -> Resource:
    resource = resource_create(
        workflow=workflow, data={}, metadata={}, actor="tests", schema_name=schema
    )
    return activity_fire(
        resource=resource, activity_id="submit", data=None, actor="tests", schema_name=schema
    ).resource


def test_skipped_refused_and_stopped_agents_are_events(flow: Any, settings: Any) -> None:
    schema, workflow, agent = flow
    resource = _submitted(schema, workflow)
    picky = StateAgent.objects.create(
        workflow=workflow, place="summarising", agent=agent, trigger_rules=["has-summary"]
    )
    assert bridge.trigger(
        schema_name=schema,
        resource_id=resource.pk,
        state_agent_id=picky.pk,
        version=0,
        trigger="manual",
    ) == ("trigger rules not met")
    picky.trigger_rules = []
    picky.save(update_fields=["trigger_rules"])
    agent.enabled = False
    agent.save(update_fields=["enabled"])
    assert (
        bridge.trigger(
            schema_name=schema,
            resource_id=resource.pk,
            state_agent_id=picky.pk,
            version=0,
            trigger="manual",
        )
        == "refused"
    )
    resource.agent_streak = settings.WORKFLOW_MAX_AGENT_STREAK
    bridge.entered(schema_name=schema, resource=resource, places=["summarising"], automatic=True)
    events = read_resource_events(resource.pk, 0)
    assert [e.type for e in events][-3:] == ["agent_skipped", "agent_refused", "cascade_stopped"]
    assert "has-summary" in str(events[-3].payload["data"]["why"])
    assert "disabled" in events[-2].payload["data"]["why"]


# ---- numbering ----


def test_a_rolled_back_event_leaves_no_gap(flow: Any) -> None:
    schema, workflow, _ = flow
    resource = resource_create(
        workflow=workflow, data={}, metadata={}, actor="tests", schema_name=schema
    )
    with pytest.raises(RuntimeError), transaction.atomic():
        record(resource, kind="activity", actor="tests", data={})
        raise RuntimeError("the step failed after recording")
    record(resource, kind="activity", actor="tests", data={})
    events = read_workflow_events(workflow.pk, 0)
    assert [(e.seq, e.workflow_seq) for e in events] == [(1, 1), (2, 2)]


@pytest.mark.django_db(transaction=True)
def test_a_follower_reading_while_resources_commit_never_skips_an_event(
    committed_personas: Any,
) -> None:
    """Writers on several resources of one workflow commit while a reader polls its cursor:
    the reader ends up with every event exactly once. Numbers taken from a plain sequence
    would commit out of order, and a reader past a late committer's number would skip it."""
    schema = committed_personas["alpha"].schema
    with schema_context(schema):
        workflow = workflow_save(
            definition=review_flow("events-race"), actor="tests", schema_name=schema
        )
    writers_done = threading.Event()
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            with schema_context(schema):
                for _ in range(n):
                    with transaction.atomic():
                        resource_create(
                            workflow=workflow, data={}, metadata={}, actor="t", schema_name=schema
                        )
                        time.sleep(random.uniform(0, 0.004))  # commit a little later
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    seen: list[int] = []

    def follow() -> None:
        try:
            with schema_context(schema):
                cursor = 0
                while True:
                    finished = writers_done.is_set()
                    for event in read_workflow_events(workflow.pk, cursor):
                        assert event.workflow_seq > cursor
                        cursor = event.workflow_seq
                        seen.append(cursor)
                    if finished:
                        return
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    reader = threading.Thread(target=follow)
    writers = [threading.Thread(target=write, args=(10,)) for _ in range(4)]
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    writers_done.set()
    reader.join()
    assert errors == []
    assert seen == list(range(1, 41))


# ---- the NATS outbox ----


def test_without_nats_no_outbox_rows_are_written(flow: Any, settings: Any) -> None:
    settings.NATS_URL = ""
    schema, workflow, _ = flow
    _submitted(schema, workflow)
    assert not EventOutbox.objects.exists()


def test_with_nats_each_event_is_queued_in_its_transaction(flow: Any, settings: Any) -> None:
    settings.NATS_URL = "nats://127.0.0.1:1"  # only written here; published by workers
    schema, workflow, agent = flow
    resource = _submitted(schema, workflow)
    binding = StateAgent.objects.create(workflow=workflow, place="summarising", agent=agent)
    bridge.trigger(
        schema_name=schema,
        resource_id=resource.pk,
        state_agent_id=binding.pk,
        version=0,
        trigger="manual",
    )
    with pytest.raises(RuntimeError), transaction.atomic():
        record(resource, kind="activity", actor="tests", data={})
        raise RuntimeError("rolled back: its message goes with it")
    rows = list(EventOutbox.objects.order_by("id"))
    assert [(r.subject, r.msg_id) for r in rows] == [
        ("cb.workflows.events-flow.events.lifecycle", f"{resource.pk}:1"),
        ("cb.workflows.events-flow.events.activities", f"{resource.pk}:2"),
        ("cb.workflows.events-flow.events.agents", f"{resource.pk}:3"),
        (f"cb.agent.execute.alpha.{agent.slug}", f"{resource.pk}:3:execute"),
    ]
    assert rows[0].payload["type"] == "resource_created" and rows[0].published_at is None
    execute = rows[3].payload
    assert execute["execution_id"] == rows[2].payload["execution_id"]
    assert execute["tenant_id"] == "alpha" and execute["agent"] == agent.slug
    assert execute["place"] == "summarising"
