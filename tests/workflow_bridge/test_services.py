"""Workflow services: firing checks the marking and the rules, merges data and records history;
two clients firing at once cannot both take one token; bindings to places that can never be
marked are refused with the reason."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from config.errors import Conflict, ValidationFailed
from tests.agents.conftest import make_agent, make_credential
from tests.workflow_bridge.test_cascade import review_flow
from workflow_bridge.binding_services import state_agent_save
from workflow_bridge.models import Resource
from workflow_bridge.services import (
    activity_fire,
    available_activities,
    resource_create,
    workflow_save,
)


def _flow(schema: str, **changes: Any) -> Any:
    definition = {**review_flow(f"flow-{uuid.uuid4().hex[:6]}"), **changes}
    return workflow_save(definition=definition, actor="tests", schema_name=schema)


def test_firing_checks_rules_merges_data_and_records_history(in_alpha: Any) -> None:
    workflow = _flow(in_alpha.schema)
    resource = resource_create(
        workflow=workflow,
        data={"a": 1, "nested": {"x": 1}},
        metadata={},
        actor="ann",
        schema_name=in_alpha.schema,
    )
    assert resource.state == "draft"
    fired = activity_fire(
        resource=resource,
        activity_id="submit",
        data={"nested": {"y": 2}, "a": None},
        actor="ann",
        schema_name=in_alpha.schema,
    )
    assert fired.resource.state == "summarising"
    assert fired.resource.data == {"nested": {"x": 1, "y": 2}}  # merge patch: null deletes
    activity_fire(
        resource=fired.resource,
        activity_id="summarised",
        data=None,
        actor="ann",
        schema_name=in_alpha.schema,
    )
    # "checked" needs data.summary: refused with the rule's explanation, nothing moves.
    with pytest.raises(Conflict) as refused:
        activity_fire(
            resource=Resource.objects.get(pk=resource.pk),
            activity_id="checked",
            data=None,
            actor="ann",
            schema_name=in_alpha.schema,
        )
    assert "has-summary" in refused.value.message and "summary" in refused.value.message
    verdicts = {
        v["activity"]: v for v in available_activities(Resource.objects.get(pk=resource.pk))
    }
    assert verdicts["redo"]["allowed"] and not verdicts["checked"]["allowed"]
    assert not verdicts["submit"]["allowed"] and "draft" in verdicts["submit"]["explanation"]
    # With the summary given in the same step, the rule passes against the merged data.
    done = activity_fire(
        resource=Resource.objects.get(pk=resource.pk),
        activity_id="checked",
        data={"summary": "ok"},
        actor="ann",
        schema_name=in_alpha.schema,
    ).resource
    assert done.state == "done"
    history = list(done.history.order_by("seq").values_list("kind", "actor", "activity"))
    assert history == [
        ("created", "ann", ""),
        ("activity", "ann", "submit"),
        ("activity", "ann", "summarised"),
        ("activity", "ann", "checked"),
    ]


def test_an_activity_naming_an_unknown_rule_never_fires(in_alpha: Any) -> None:
    definition = review_flow(f"flow-{uuid.uuid4().hex[:6]}")
    definition["activities"][0]["rules"] = ["no-such-rule"]
    workflow = workflow_save(definition=definition, actor="tests", schema_name=in_alpha.schema)
    resource = resource_create(
        workflow=workflow, data={}, metadata={}, actor="ann", schema_name=in_alpha.schema
    )
    with pytest.raises(Conflict, match="no-such-rule"):
        activity_fire(
            resource=resource,
            activity_id="submit",
            data=None,
            actor="ann",
            schema_name=in_alpha.schema,
        )


def test_an_unknown_condition_type_is_refused_when_stored(in_alpha: Any) -> None:
    definition = review_flow(f"flow-{uuid.uuid4().hex[:6]}")
    definition["rules"][0]["condition"] = {"type": "AlwaysTrue"}
    with pytest.raises(ValidationFailed, match="AlwaysTrue"):
        workflow_save(definition=definition, actor="tests", schema_name=in_alpha.schema)


@pytest.mark.django_db(transaction=True)
def test_two_clients_firing_at_once_cannot_both_take_the_token(committed_personas: Any) -> None:
    schema = committed_personas["alpha"].schema
    with schema_context(schema):
        workflow = _flow(schema)
        resource = resource_create(
            workflow=workflow, data={}, metadata={}, actor="ann", schema_name=schema
        )
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def fire(activity: str) -> None:
        try:
            with schema_context(schema):
                start.wait(5)
                activity_fire(
                    resource=Resource.objects.get(pk=resource.pk),
                    activity_id=activity,
                    data={"by": activity},
                    actor=activity,
                    schema_name=schema,
                )
            outcomes.append("fired")
        except Conflict:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=fire, args=("submit",)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes) == ["fired", "refused"]
    with schema_context(schema):
        final = Resource.objects.get(pk=resource.pk)
        assert final.marking == {"summarising": 1}
        assert final.history.filter(kind="activity").count() == 1
        Resource.objects.filter(pk=resource.pk).delete()
        workflow.delete()


def test_an_agent_cannot_be_bound_to_a_place_that_can_never_be_marked(in_alpha: Any) -> None:
    definition = review_flow(f"flow-{uuid.uuid4().hex[:6]}")
    definition["states"].append("limbo")  # nothing leads there
    workflow = workflow_save(definition=definition, actor="tests", schema_name=in_alpha.schema)
    agent = make_agent(make_credential(kind="echo"), in_alpha.schema)
    with pytest.raises(ValidationFailed, match=r"limbo.*can never be marked"):
        state_agent_save(workflow=workflow, data={"place": "limbo", "agent": agent.slug})
    with pytest.raises(ValidationFailed, match="auto_activity"):
        state_agent_save(
            workflow=workflow,
            data={"place": "summarising", "agent": agent.slug, "auto_activity": "submit"},
        )
    with pytest.raises(ValidationFailed, match="output_mapping"):
        state_agent_save(
            workflow=workflow,
            data={"place": "summarising", "agent": agent.slug, "output_mapping": {"x": "output"}},
        )
    bound = state_agent_save(
        workflow=workflow,
        data={"place": "summarising", "agent": agent.slug, "auto_activity": "summarised"},
    )
    assert bound.place == "summarising" and bound.auto_activity == "summarised"


def test_a_rule_whose_pattern_runs_away_refuses_the_firing_with_the_reason(in_alpha: Any) -> None:
    definition = review_flow(f"flow-{uuid.uuid4().hex[:6]}")
    definition["rules"].append(
        {
            "id": "runaway",
            "condition": {"type": "Matches", "field": "data.text", "pattern": "^(a|aa)+$"},
        }
    )
    definition["activities"][0]["rules"] = ["runaway"]
    workflow = workflow_save(definition=definition, actor="tests", schema_name=in_alpha.schema)
    resource = resource_create(
        workflow=workflow,
        data={"text": "a" * 64 + "!"},
        metadata={},
        actor="ann",
        schema_name=in_alpha.schema,
    )
    with pytest.raises(Conflict, match="could not be evaluated"):
        activity_fire(
            resource=resource,
            activity_id="submit",
            data=None,
            actor="ann",
            schema_name=in_alpha.schema,
        )
    verdicts = {v["activity"]: v for v in available_activities(resource)}
    assert not verdicts["submit"]["allowed"]
