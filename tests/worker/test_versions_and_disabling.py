"""A queued run executes the agent version it was created with; a disabled agent's queued runs
are cancelled with the reason, not run."""

from __future__ import annotations

from typing import Any

import pytest
from django_tenants.utils import schema_context

from agents.core.queue import enqueue
from agents.models import Agent
from agents.services.agents import agent_delete, agent_update
from tests.runs import store_queued
from tests.worker.conftest import create_queued, events_of, execution_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_queued_run_executes_the_version_it_was_created_with(
    scripted_agent: Any, spawn_worker: Any, fake_llm: Any
) -> None:
    alpha = scripted_agent("alpha")
    schema = alpha.persona.schema
    with schema_context(schema):
        second = agent_update(
            agent=alpha.agent,
            changes={"system_prompt": "You are version two."},
            actor="tests",
            schema_name=schema,
        )
    execution_id = store_queued(schema, second).id  # pinned to version 2
    with schema_context(schema):
        # Changed again before any worker picks the run up.
        agent_update(
            agent=Agent.objects.get(pk=alpha.agent.pk),
            changes={"system_prompt": "You are version three.", "temperature": 0.1},
            actor="tests",
            schema_name=schema,
        )
    fake_llm.script(alpha.key, {"reply": "ran"})
    enqueue(schema_name=schema, execution_id=execution_id)
    spawn_worker()

    wait_for(lambda: execution_of(schema, execution_id).is_terminal, 15, "the run")
    execution = execution_of(schema, execution_id)
    assert (execution.status, execution.agent_version) == ("completed", 2)
    sent = fake_llm.requests(alpha.key)[-1]["json"]
    assert sent["messages"][0]["content"] == "You are version two."
    assert sent["temperature"] != 0.1


def test_a_disabled_agents_queued_runs_are_cancelled_with_the_reason(
    scripted_agent: Any, spawn_worker: Any, fake_llm: Any
) -> None:
    alpha = scripted_agent("alpha")
    schema = alpha.persona.schema
    queued = [create_queued(alpha) for _ in range(2)]
    for execution_id in queued:
        enqueue(schema_name=schema, execution_id=execution_id)
    with schema_context(schema):
        disabled = agent_delete(agent=alpha.agent, actor="tests", schema_name=schema)
    assert disabled is not None and not disabled.enabled  # it has executions: disabled, kept
    spawn_worker()

    for execution_id in queued:
        wait_for(lambda e=execution_id: execution_of(schema, e).is_terminal, 15, "cancelled")
        execution = execution_of(schema, execution_id)
        assert (execution.status, execution.error_code) == ("cancelled", "agent_disabled")
        events = events_of(schema, execution_id)
        assert [e.type for e in events] == ["cancelled"]
        assert "disabled" in events[0].data["reason"]
    assert fake_llm.requests(alpha.key) == []
