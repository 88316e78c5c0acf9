"""M6 of the performance protocol: database work per blocking execution over REST, and at most
one `SET search_path` per request."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from tests.agents.conftest import make_agent, make_credential
from tests.agents.test_run_config_cache import listening_hub, until  # noqa: F401 (a fixture)


def test_a_blocking_execution_over_rest_costs_one_set_and_five_statements(alpha, api):
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
    # API key (+tenant and plan), agent (+credential), prices, then the execution with its
    # execution.start audit entry (agents.core.admission: one round trip, config.sql; the hash
    # chain is the table trigger's), then the run's end (agents.core.finish: one statement for
    # the UPDATE, the events and the usage counters). The plan itself is cached: no statement.
    work = [s for s in statements if s not in {"SET", "SAVEPOINT", "RELEASE"}]
    assert len(work) <= 5, captured.captured_queries
    assert work[-2:] == ["INSERT", "WITH"], captured.captured_queries


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("listening_hub")
def test_a_known_agent_costs_no_agent_or_price_statement_while_the_hub_listens(
    committed_personas, api
):
    """With the process's hub listening, the agent (with its credential and snapshot) and the
    price table come from agents.core.run_config: the run's statements are its own writes."""
    alpha = committed_personas["alpha"]
    with schema_context(alpha.schema):
        agent = make_agent(make_credential(kind="echo"), alpha.schema)
    client = api(alpha.user_key)

    def work() -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            response = client.post(f"/agents/{agent.id}/execute", {"input": {"message": "n"}})
        assert response.status_code == 200 and response.json()["status"] == "completed"
        skipped = {"SET", "SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"}
        return [q["sql"] for q in captured.captured_queries if q["sql"].split()[0] not in skipped]

    # Warm: the key row, the agent and the prices cached (the set-up's own NOTIFYs, heard
    # meanwhile, may forget them once more).
    until(lambda: not any('"agents_agent"' in sql for sql in work()), "a warm run")
    statements = work()
    assert not [s for s in statements if '"agents_agent"' in s or '"agents_modelprice"' in s]
    assert not [s for s in statements if '"agents_providercredential"' in s]
    # The execution with its execution.start audit entry (one round trip), then the run's end
    # (agents.core.finish: one statement). The API key row and the plan are cached too.
    assert len(statements) == 2, statements
    assert 'INSERT INTO "audit_auditlog"' in statements[0], statements
