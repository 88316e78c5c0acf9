"""A tenant's plan over REST: per-call bounds, quotas, budgets, concurrency, agents, GET /plan.

Every refusal comes before anything is stored, names the limit in its code, and leaves the
other tenant untouched.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.core.management import call_command
from django_tenants.utils import schema_context

from agents.models import Execution, ExecutionEvent, ExecutionStatus, UsageCounter
from tests.limits.conftest import price


def run(api: Any, agent: Any, key: str | None = None, **body: Any) -> Any:
    body.setdefault("input", {"message": "hello"})
    return api(key or agent.persona.user_key).post(f"/agents/{agent.agent.slug}/execute", body)


def executions(schema: str) -> int:
    with schema_context(schema):
        return Execution.objects.count()


def test_model_and_provider_outside_the_plan_are_refused(api, plan_on, make_llm_agent, alpha):
    agent = make_llm_agent(alpha)
    plan_on(alpha, allowed_models=["gpt-4o*"])
    response = run(api, agent)
    assert response.status_code == 403, response.json()
    assert "fake-model" in response.json()["error"]["message"]
    plan_on(alpha, allowed_models=["fake-*"], allowed_providers=["anthropic"])
    response = run(api, agent)
    assert response.status_code == 403
    assert "provider 'openai'" in response.json()["error"]["message"]
    assert executions(alpha.schema) == 0


def test_max_tokens_and_timeout_are_bounded_by_the_plan(
    api, plan_on, make_llm_agent, alpha, fake_llm
):
    agent = make_llm_agent(alpha, max_tokens=4000, timeout_seconds=300)
    plan_on(alpha, max_tokens_per_call=256, max_execution_seconds=60)
    response = run(api, agent, input={"message": "x", "parameters": {"max_tokens": 1000}})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("input.parameters.max_tokens")
    response = run(api, agent, execution_config={"timeout_seconds": 120})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("execution_config.timeout_seconds")
    assert executions(alpha.schema) == 0
    # The agent's own larger defaults run lowered to the plan's bounds.
    fake_llm.script(agent.key, {"reply": "ok"})
    response = run(api, agent)
    assert response.status_code == 200, response.json()
    assert fake_llm.requests(agent.key)[-1]["json"]["max_tokens"] == 256
    with schema_context(alpha.schema):
        stored = Execution.objects.get(pk=response.json()["execution_id"])
    assert stored.options["timeout_seconds"] == 60


def test_daily_execution_quota(api, plan_on, make_llm_agent, alpha, bravo, fake_llm):
    agent = make_llm_agent(alpha)
    other = make_llm_agent(bravo)
    plan_on(alpha, executions_per_day=2)
    for _ in range(2):
        assert run(api, agent).status_code == 200
    refused = run(api, agent)
    assert refused.status_code == 429, refused.json()
    assert refused.json()["error"]["code"] == "daily_execution_quota_exceeded"
    retry_after = int(refused["Retry-After"])
    assert 1 <= retry_after <= 86_400
    assert executions(alpha.schema) == 2
    # Background runs count too; the other tenant is not affected.
    refused = run(api, agent, execution_config={"mode": "background"})
    assert refused.status_code == 429
    assert run(api, other).status_code == 200


def test_counters_equal_the_sum_of_the_stored_executions(
    api, plan_on, make_llm_agent, alpha, fake_llm
):
    agent = make_llm_agent(alpha)
    plan_on(alpha, tokens_per_month=1_000_000)
    price(alpha.schema, "fake-model", input_pm="2", output_pm="10")
    for text in ("one", "two words here", "three"):
        fake_llm.script(agent.key, {"reply": text})
        assert run(api, agent).status_code == 200
    with schema_context(alpha.schema):
        rows = list(Execution.objects.all())
        day = UsageCounter.objects.get(period="day")
        month = UsageCounter.objects.get(period="month")
    assert day.executions == month.executions == 3
    assert day.input_tokens == sum(e.input_tokens for e in rows) > 0
    assert day.output_tokens == sum(e.output_tokens for e in rows) > 0
    assert day.cost == sum((e.cost for e in rows), Decimal(0)) > 0
    body = api(alpha.readonly_key).get("/plan").json()
    assert body["current"]["tokens_this_month"] == day.input_tokens + day.output_tokens
    assert body["current"]["reserved_tokens"] == 0  # nothing active holds a reservation


def test_token_quota_refuses_a_run_that_could_pass_it(
    api, plan_on, make_llm_agent, alpha, fake_llm
):
    agent = make_llm_agent(alpha, max_tokens=500)
    plan_on(alpha, tokens_per_day=400)  # less than one call's max_tokens: could pass it
    response = run(api, agent)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "daily_token_quota_exceeded"
    plan_on(alpha, tokens_per_day=5000)
    fake_llm.script(agent.key, {"reply": "fits"})
    assert run(api, agent).status_code == 200


def test_budget_refuses_before_anything_is_stored(api, plan_on, make_llm_agent, alpha):
    agent = make_llm_agent(alpha, max_tokens=100)
    # One output token costs 0.5: the first call's bound (100 output tokens) is 50.
    price(alpha.schema, "fake-model", output_pm="500000")
    plan_on(alpha, cost_budget=Decimal("20"), budget_period="day")
    response = run(api, agent)
    assert response.status_code == 429, response.json()
    error = response.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert error["details"]["budget"].startswith("20")
    assert executions(alpha.schema) == 0


def lookup_tool(url: str) -> dict[str, Any]:
    return {
        "name": "lookup",
        "kind": "http",
        "description": "looks things up",
        "parameters": {"type": "object"},
        "config": {"url": url},
    }


def test_a_run_stops_with_budget_exceeded_when_its_next_call_could_pass_the_budget(
    api, plan_on, make_llm_agent, alpha, fake_llm
):
    """Admission reserves the first call; the model asks for a tool; the second call would
    need more than the budget has left, so the run ends with a terminal budget_exceeded
    error instead of making it."""
    agent = make_llm_agent(
        alpha, max_tokens=100, tools=[lookup_tool(f"{fake_llm.url}/v1/chat/completions")]
    )
    price(alpha.schema, "fake-model", output_pm="500000")
    plan_on(alpha, cost_budget=Decimal("50.25"), budget_period="day")
    fake_llm.script(
        agent.key,
        {"tool_calls": [{"name": "lookup", "arguments": {"q": "x"}}]},
        {"reply": "never asked for"},
    )
    response = run(api, agent)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "failed"
    assert body["error_code"] == "budget_exceeded"
    with schema_context(alpha.schema):
        stored = Execution.objects.get(pk=body["execution_id"])
        last = ExecutionEvent.objects.filter(execution=stored).order_by("-seq").first()
        counter = UsageCounter.objects.get(period="day")
    assert last is not None and last.type == "error"
    assert last.data["code"] == "budget_exceeded"
    # One model call was made, and only its actual cost was spent.
    completions = [r for r in fake_llm.requests(agent.key) if r["path"].endswith("/completions")]
    assert len([r for r in completions if r["json"].get("model") == "fake-model"]) == 1
    assert 0 < stored.cost <= Decimal("50.25") and counter.cost == stored.cost


def test_concurrency_cap_counts_runs_of_every_mode(
    api, plan_on, make_llm_agent, alpha, bravo, fake_llm
):
    agent = make_llm_agent(alpha)
    plan_on(alpha, max_concurrent_executions=1)
    with schema_context(alpha.schema):
        Execution.objects.create(
            agent=agent.agent,
            agent_version=agent.agent.version,
            status=ExecutionStatus.RUNNING,
            started_at=dt.datetime.now(dt.UTC),
        )
    refused = run(api, agent)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "concurrency_limit_exceeded"
    assert refused["Retry-After"] == "1"
    # A background run is admitted (queued): the worker starts it when a place is free.
    queued = run(api, agent, execution_config={"mode": "background"})
    assert queued.status_code == 202, queued.json()
    assert run(api, make_llm_agent(bravo)).status_code == 200


def test_max_agents(api, plan_on, make_llm_agent, alpha):
    agent = make_llm_agent(alpha)
    plan_on(alpha, max_agents=1)
    response = api(alpha.admin_key).post(
        "/agents",
        {
            "slug": "one-too-many",
            "name": "x",
            "credential": agent.credential.name,
            "model": "fake-model",
        },
    )
    assert response.status_code == 403, response.json()
    assert response.json()["error"]["code"] == "agent_limit_exceeded"


def test_plan_endpoint_shows_the_plan_and_consumption_of_the_callers_tenant_only(
    api, plan_on, alpha, bravo
):
    plan_on(alpha, executions_per_day=7, cost_budget=Decimal("10"), allowed_models=["a*"])
    mine = api(alpha.readonly_key).get("/plan")
    assert mine.status_code == 200
    body = mine.json()
    assert body["plan"]["executions_per_day"] == 7
    assert body["plan"]["cost_budget"] == "10"
    assert body["plan"]["allowed_models"] == ["a*"]
    assert body["current"]["budget_used_percent"] == 0.0
    assert body["current"]["budget_warning"] is False
    theirs = api(bravo.readonly_key).get("/plan").json()
    assert theirs["plan"]["executions_per_day"] is None and theirs["plan"]["plan"] == ""


def test_set_plan_command_creates_changes_and_assigns(alpha, bravo):
    from tenants.models import Plan, Tenant

    call_command(
        "set_plan",
        "team",
        "--name",
        "Team",
        "--executions-per-day",
        "100",
        "--cost-budget",
        "25.5",
        "--allowed-models",
        "gpt-4o*, claude-*",
        "--tenant",
        alpha.slug,
    )
    plan = Plan.objects.get(slug="team")
    assert plan.executions_per_day == 100 and plan.cost_budget == Decimal("25.5")
    assert plan.allowed_models == ["gpt-4o*", "claude-*"]
    assert Tenant.objects.get(pk=alpha.tenant.pk).plan == plan
    call_command("set_plan", "team", "--clear", "cost_budget", "--tenant", bravo.slug)
    plan.refresh_from_db()
    assert plan.cost_budget is None and plan.executions_per_day == 100
    assert Tenant.objects.get(pk=bravo.tenant.pk).plan == plan
    call_command("set_plan", "--none", "--tenant", alpha.slug)
    assert Tenant.objects.get(pk=alpha.tenant.pk).plan is None
