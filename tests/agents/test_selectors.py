"""The plan's execution queries: by context key, several filters, nested path, resource, status,
recent N, and per-agent statistics."""

from __future__ import annotations

import pytest

from agents.models import Execution
from agents.selectors import (
    agent_stats,
    execution_count_by_context,
    execution_list,
    execution_recent,
)
from tests.agents.conftest import make_agent, make_credential


@pytest.fixture
def runs(in_alpha):
    agent = make_agent(make_credential(), in_alpha.schema)
    other = make_agent(make_credential(), in_alpha.schema)

    def add(agent_, status: str, context: dict, duration: int | None = None) -> Execution:
        return Execution.objects.create(
            agent=agent_, agent_version=1, status=status, context=context, duration_ms=duration
        )

    made = {
        "a": add(
            agent,
            "completed",
            {"user_context": {"user_id": "u1"}, "workflow_context": {"resource_id": "r1"}},
            100,
        ),
        "b": add(agent, "failed", {"user_context": {"user_id": "u1", "session_id": "s9"}}, 300),
        "c": add(agent, "running", {"user_context": {"user_id": "u2"}, "resource_id": "r2"}),
        "d": add(other, "completed", {"user_context": {"user_id": "u1"}}, 50),
    }
    return agent, other, made


def ids(queryset) -> set[str]:
    return {e.id for e in queryset}


def test_by_context_key_several_filters_and_nested_path(runs):
    agent, _, made = runs
    assert ids(execution_list(context_filters={"user_context.user_id": "u1"})) == {
        made["a"].id,
        made["b"].id,
        made["d"].id,
    }
    assert ids(
        execution_list(
            context_filters={"user_context.user_id": "u1", "user_context.session_id": "s9"}
        )
    ) == {made["b"].id}
    assert execution_count_by_context("user_context.user_id", "u2") == 1
    assert ids(execution_list(agent=agent, context_filters={"user_context.user_id": "u1"})) == {
        made["a"].id,
        made["b"].id,
    }


def test_by_resource_status_and_recent(runs):
    _, _, made = runs
    assert ids(execution_list(resource_id="r1")) == {made["a"].id}
    assert ids(execution_list(resource_id="r2")) == {made["c"].id}
    assert ids(execution_list(status="failed")) == {made["b"].id}
    assert [e.id for e in execution_recent(2)] == [made["d"].id, made["c"].id]


def test_stats_per_agent_and_tenant(runs):
    agent, _, _ = runs
    assert agent_stats(agent) == {
        "total": 3,
        "completed": 1,
        "failed": 1,
        "running": 1,
        "avg_duration_ms": 200.0,
    }
    assert agent_stats()["total"] == 4
