"""M6 of the performance protocol: database work per blocking execution over REST, and at most
one `SET search_path` per request."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from tests.agents.conftest import make_agent, make_credential


def test_a_blocking_execution_over_rest_costs_one_set_and_eight_statements(alpha, api):
    with schema_context(alpha.schema):
        agent = make_agent(make_credential(kind="echo"), alpha.schema)
    client = api(alpha.user_key)
    assert (
        client.post(f"/agents/{agent.id}/execute", {"input": {"message": "warm up"}}).status_code
        == 200
    )
    with CaptureQueriesContext(connection) as captured:
        response = client.post(f"/agents/{agent.id}/execute", {"input": {"message": "count"}})
    assert response.status_code == 200 and response.json()["status"] == "completed"
    statements = [q["sql"].split()[0] for q in captured.captured_queries]
    assert statements.count("SET") <= 1, statements
    # API key (+tenant and plan), agent (+credential), INSERT execution, prices, INSERT the
    # execution.start audit entry (agents.core.admission, one statement: the hash chain is the
    # table trigger's), UPDATE execution, INSERT events, usage counters
    # (agents.core.limits.settle). The plan itself is cached: no statement.
    work = [s for s in statements if s not in {"SET", "SAVEPOINT", "RELEASE"}]
    assert len(work) <= 8, captured.captured_queries
