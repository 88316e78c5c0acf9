"""The bridge end to end, with a real worker and the fake LLM server: a resource entering an
agent place runs its agent in the worker (never in the request), the output is written back,
the auto activity fires and the next place's agent runs; a failing required activity agent
blocks its transition; a cycling cascade stops at the loop bound; a result that arrives after
the resource moved on is recorded, not applied."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import override_settings
from django_tenants.utils import schema_context

from agents.models import Execution
from tests.agents.conftest import make_agent, make_credential
from tests.worker.conftest import wait_for
from workflow_bridge.models import ActivityAgent, AgentRun, Firing, Resource, StateAgent
from workflow_bridge.services import activity_fire, resource_create, workflow_save

pytestmark = pytest.mark.django_db(transaction=True)


def review_flow(slug: str) -> dict[str, Any]:
    """draft → (submit) → summarising [agent] → (summarised) → checking [agent] →
    (checked) → done; plus a loop back from checking to summarising (redo)."""
    return {
        "format": "circuit-breaker/workflow@1",
        "slug": slug,
        "name": "Review",
        "states": ["draft", "summarising", "checking", "done"],
        "initial_state": "draft",
        "activities": [
            {"id": "submit", "from_states": ["draft"], "to_state": "summarising"},
            {"id": "summarised", "from_states": ["summarising"], "to_state": "checking"},
            {
                "id": "checked",
                "from_states": ["checking"],
                "to_state": "done",
                "rules": ["has-summary"],
            },
            {"id": "redo", "from_states": ["checking"], "to_state": "summarising"},
        ],
        "final_places": ["done"],
        "rules": [
            {
                "id": "has-summary",
                "condition": {"type": "FieldExists", "field": "data.summary"},
            }
        ],
    }


@pytest.fixture
def site(committed_personas: Any, fake_llm: Any, settings: Any, clean_queue: None) -> Any:
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    alpha = committed_personas["alpha"]

    class Site:
        schema = alpha.schema

        def agent(self) -> tuple[Any, str]:
            key = f"sk-test-{uuid.uuid4().hex}"
            with schema_context(alpha.schema):
                credential = make_credential(
                    kind="openai", base_url=f"{fake_llm.url}/v1", api_key=key
                )
                return make_agent(credential, alpha.schema), key

        def workflow(self, definition: dict[str, Any]) -> Any:
            with schema_context(alpha.schema):
                return workflow_save(definition=definition, actor="tests", schema_name=alpha.schema)

    return Site()


def _resource(schema: str, resource_id: str) -> Resource:
    with schema_context(schema):
        return Resource.objects.get(pk=resource_id)


def _history(schema: str, resource_id: str) -> list[str]:
    with schema_context(schema):
        return list(
            Resource.objects.get(pk=resource_id)
            .history.order_by("seq")
            .values_list("kind", flat=True)
        )


def test_a_resource_cascades_through_agent_places(
    site: Any, spawn_worker: Any, fake_llm: Any
) -> None:
    summariser, summariser_key = site.agent()
    checker, checker_key = site.agent()
    workflow = site.workflow(review_flow(f"review-{uuid.uuid4().hex[:6]}"))
    with schema_context(site.schema):
        StateAgent.objects.create(
            workflow=workflow,
            place="summarising",
            agent=summariser,
            input_mapping={"message": "data.document"},
            output_mapping={"data.summary": "output"},
            auto_activity="summarised",
        )
        StateAgent.objects.create(
            workflow=workflow,
            place="checking",
            agent=checker,
            output_mapping={"metadata.verdict": "output"},
            auto_activity="checked",
        )
        resource = resource_create(
            workflow=workflow,
            data={"document": "A long text about tides."},
            metadata={},
            actor="tests",
            schema_name=site.schema,
        )
        fired = activity_fire(
            resource=resource,
            activity_id="submit",
            data={"owner": "ann"},
            actor="tests",
            schema_name=site.schema,
        )
        # The request that moved the resource ran no agent: it only queued the trigger.
        assert fired.resource.state == "summarising"
        assert not AgentRun.objects.filter(resource=resource).exists()
    fake_llm.script(summariser_key, {"reply": "Tides rise and fall."})
    fake_llm.script(checker_key, {"reply": "looks right"})
    spawn_worker()

    wait_for(lambda: _resource(site.schema, resource.pk).state == "done", 20, "the cascade")
    done = _resource(site.schema, resource.pk)
    assert done.data == {
        "document": "A long text about tides.",
        "owner": "ann",  # merged, not replaced
        "summary": "Tides rise and fall.",
    }
    assert done.metadata == {"verdict": "looks right"}
    sent = fake_llm.requests(summariser_key)[-1]["json"]["messages"][-1]["content"]
    assert "A long text about tides." in sent
    with schema_context(site.schema):
        runs = list(AgentRun.objects.filter(resource=resource).order_by("created_at"))
        assert [(r.place, r.status) for r in runs] == [
            ("summarising", "applied"),
            ("checking", "applied"),
        ]
        # Each agent run is an ordinary execution, linked to its resource.
        execution = Execution.objects.get(pk=runs[0].execution_id)
        assert execution.context["workflow_context"]["resource_id"] == resource.pk
        assert execution.context["workflow_context"]["state_id"] == "summarising"
        assert execution.principal == f"workflow:{workflow.slug}"
        # The person whose step led there is in the first agent's context, not the second's
        # (the cascade moved it there).
        assert execution.context["user_context"] == {"user_id": "tests"}
        second = Execution.objects.get(pk=runs[1].execution_id)
        assert "user_context" not in second.context
    kinds = _history(site.schema, resource.pk)
    assert kinds == [
        "created",
        "activity",  # submit (by a person)
        "agent_triggered",
        "agent_result",
        "activity",  # summarised (auto)
        "agent_triggered",
        "agent_result",
        "activity",  # checked (auto, its rule passed on the written summary)
    ]


def test_a_failing_required_activity_agent_blocks_its_transition(
    site: Any, spawn_worker: Any, fake_llm: Any
) -> None:
    approver, approver_key = site.agent()
    workflow = site.workflow(review_flow(f"review-{uuid.uuid4().hex[:6]}"))
    with schema_context(site.schema):
        ActivityAgent.objects.create(workflow=workflow, activity="submit", agent=approver)
        resource = resource_create(
            workflow=workflow, data={}, metadata={}, actor="tests", schema_name=site.schema
        )
        fired = activity_fire(
            resource=resource,
            activity_id="submit",
            data=None,
            actor="tests",
            schema_name=site.schema,
        )
        assert fired.firing is not None and fired.resource.state == "draft"
    fake_llm.script(approver_key, {"status": 401, "message": "no"})
    spawn_worker()

    firing_id = fired.firing.pk
    wait_for(lambda: _firing_status(site.schema, firing_id) != "pending", 20, "the decision")
    assert _firing_status(site.schema, firing_id) == "failed"
    assert _resource(site.schema, resource.pk).state == "draft"  # the token did not move
    assert _history(site.schema, resource.pk)[-1] == "activity_failed"


def _firing_status(schema: str, firing_id: int) -> str:
    with schema_context(schema):
        return str(Firing.objects.get(pk=firing_id).status)


def test_a_cycling_cascade_stops_at_the_loop_bound(
    site: Any, spawn_worker: Any, fake_llm: Any
) -> None:
    looper, looper_key = site.agent()
    workflow = site.workflow(review_flow(f"review-{uuid.uuid4().hex[:6]}"))
    with schema_context(site.schema):
        StateAgent.objects.create(
            workflow=workflow, place="summarising", agent=looper, auto_activity="summarised"
        )
        StateAgent.objects.create(
            workflow=workflow, place="checking", agent=looper, auto_activity="redo"
        )
        resource = resource_create(
            workflow=workflow, data={}, metadata={}, actor="tests", schema_name=site.schema
        )
    fake_llm.script(looper_key, *[{"reply": "again"}] * 12)
    with override_settings(WORKFLOW_MAX_AGENT_STREAK=4):
        with schema_context(site.schema):
            activity_fire(
                resource=resource,
                activity_id="submit",
                data=None,
                actor="tests",
                schema_name=site.schema,
            )
        spawn_worker(WORKFLOW_MAX_AGENT_STREAK="4")
        wait_for(lambda: "cascade_stopped" in _history(site.schema, resource.pk), 30, "the stop")
    with schema_context(site.schema):
        # The person's step, then four automatic entries: the fifth is refused.
        assert AgentRun.objects.filter(resource=resource).count() == 1 + 4
        stopped = resource.history.get(kind="cascade_stopped")
        assert "4" in stopped.data["reason"]


def test_a_result_arriving_after_the_resource_moved_is_not_applied(
    site: Any, spawn_worker: Any, fake_llm: Any
) -> None:
    slow, slow_key = site.agent()
    workflow = site.workflow(review_flow(f"review-{uuid.uuid4().hex[:6]}"))
    with schema_context(site.schema):
        StateAgent.objects.create(
            workflow=workflow,
            place="summarising",
            agent=slow,
            output_mapping={"data.summary": "output"},
        )
        resource = resource_create(
            workflow=workflow, data={}, metadata={}, actor="tests", schema_name=site.schema
        )
        activity_fire(
            resource=resource,
            activity_id="submit",
            data=None,
            actor="tests",
            schema_name=site.schema,
        )
    fake_llm.script(slow_key, {"reply": "late summary", "chunks": 5, "chunk_delay": 0.4})
    spawn_worker()

    def running() -> bool:
        with schema_context(site.schema):
            return AgentRun.objects.filter(resource=resource, status="running").exists()

    wait_for(running, 15, "the agent running")
    with schema_context(site.schema):
        # A person moves it on while the agent still runs.
        activity_fire(
            resource=Resource.objects.get(pk=resource.pk),
            activity_id="summarised",
            data={"summary": "written by hand"},
            actor="tests",
            schema_name=site.schema,
        )
    wait_for(lambda: not running(), 15, "the run ended")
    wait_for(
        lambda: "agent_result_not_applied" in _history(site.schema, resource.pk), 10, "recorded"
    )
    moved = _resource(site.schema, resource.pk)
    assert moved.state == "checking" and moved.data["summary"] == "written by hand"
    with schema_context(site.schema):
        run = AgentRun.objects.get(resource=resource)
        assert run.status == "stale" and "left 'summarising'" in run.reason


def test_a_succeeding_activity_agent_completes_its_firing_with_its_output(
    site: Any, spawn_worker: Any, fake_llm: Any
) -> None:
    approver, approver_key = site.agent()
    workflow = site.workflow(review_flow(f"review-{uuid.uuid4().hex[:6]}"))
    with schema_context(site.schema):
        ActivityAgent.objects.create(
            workflow=workflow,
            activity="submit",
            agent=approver,
            output_mapping={"metadata.approval": "output"},
        )
        resource = resource_create(
            workflow=workflow, data={}, metadata={}, actor="tests", schema_name=site.schema
        )
        fired = activity_fire(
            resource=resource,
            activity_id="submit",
            data={"note": "please"},
            actor="ann",
            schema_name=site.schema,
        )
    fake_llm.script(approver_key, {"reply": "approved"})
    spawn_worker()

    wait_for(lambda: _resource(site.schema, resource.pk).state == "summarising", 20, "moved")
    moved = _resource(site.schema, resource.pk)
    assert moved.data == {"note": "please"} and moved.metadata == {"approval": "approved"}
    assert _firing_status(site.schema, fired.firing.pk) == "completed"
    kinds = _history(site.schema, resource.pk)
    assert kinds == ["created", "activity_pending", "agent_triggered", "activity"]


def test_a_failed_state_agent_follows_its_failure_activity(
    site: Any, spawn_worker: Any, fake_llm: Any
) -> None:
    broken, broken_key = site.agent()
    workflow = site.workflow(review_flow(f"review-{uuid.uuid4().hex[:6]}"))
    with schema_context(site.schema):
        StateAgent.objects.create(
            workflow=workflow,
            place="summarising",
            agent=broken,
            auto_activity="summarised",
            on_failure_activity="summarised",
        )
        StateAgent.objects.create(workflow=workflow, place="checking", agent=broken, enabled=False)
        resource = resource_create(
            workflow=workflow, data={}, metadata={}, actor="tests", schema_name=site.schema
        )
        activity_fire(
            resource=resource,
            activity_id="submit",
            data=None,
            actor="tests",
            schema_name=site.schema,
        )
    fake_llm.script(broken_key, {"status": 401, "message": "bad key"})
    spawn_worker()

    wait_for(lambda: _resource(site.schema, resource.pk).state == "checking", 20, "moved on")
    with schema_context(site.schema):
        failure = Resource.objects.get(pk=resource.pk).history.get(kind="agent_failed")
        assert failure.data["error_code"] == "authentication"
        assert AgentRun.objects.get(resource=resource).status == "failed"


def test_an_interval_agent_runs_again_until_its_maximum(
    site: Any, spawn_worker: Any, fake_llm: Any
) -> None:
    poller, poller_key = site.agent()
    workflow = site.workflow(review_flow(f"review-{uuid.uuid4().hex[:6]}"))
    with schema_context(site.schema):
        StateAgent.objects.create(
            workflow=workflow,
            place="draft",
            agent=poller,
            output_mapping={"data.last_poll": "output"},
            interval_seconds=0.2,
            max_executions=3,
            merge_policy="commutative",
        )
        resource = resource_create(
            workflow=workflow, data={}, metadata={}, actor="tests", schema_name=site.schema
        )
    fake_llm.script(poller_key, {"reply": "one"}, {"reply": "two"}, {"reply": "three"})
    spawn_worker()

    def applied() -> int:
        with schema_context(site.schema):
            return AgentRun.objects.filter(resource=resource, status="applied").count()

    wait_for(lambda: applied() == 3, 20, "three polls")
    assert _resource(site.schema, resource.pk).data == {"last_poll": "three"}
    # The fourth trigger finds the maximum reached and starts nothing.
    wait_for(lambda: _trigger_jobs() == {"succeeded": 4}, 10, "the fourth trigger done")
    with schema_context(site.schema):
        assert AgentRun.objects.filter(resource=resource).count() == 3


def _trigger_jobs() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status::text, count(*) FROM procrastinate_jobs WHERE task_name = %s "
            "GROUP BY status",
            ["workflow_bridge.trigger_state_agent"],
        )
        return {status: int(count) for status, count in cursor.fetchall()}
