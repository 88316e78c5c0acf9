"""Reliability case 7: what the platform keeps in memory per process is kept per tenant.

- The plan cache (``tenants.plans``, read on every request): two tenants' plans, read one
  after the other through the same process, each get their own entry and their own limits.
- The provider HTTP clients, shared per base URL: two tenants whose credentials point at the
  same provider URL, run interleaved, each send only their own key upstream.
- The idempotency store: the same ``Idempotency-Key`` under two tenants is two executions.
"""

from __future__ import annotations

import uuid

from django_tenants.utils import schema_context

from agents.models import Execution
from tenants.plans import limits_for


def test_the_plan_cache_holds_one_entry_per_tenant(api, plan_on, alpha, bravo, make_llm_agent):
    agent = make_llm_agent(alpha)
    plan_on(alpha, max_agents=1, executions_per_day=3)
    plan_on(bravo, executions_per_day=50)
    for _ in range(2):  # the second round is served from the cache
        assert limits_for(alpha.schema).executions_per_day == 3
        assert limits_for(bravo.schema).executions_per_day == 50
        assert api(alpha.readonly_key).get("/plan").json()["plan"]["executions_per_day"] == 3
        assert api(bravo.readonly_key).get("/plan").json()["plan"]["executions_per_day"] == 50
    # Alpha's cached plan does not bound bravo: bravo may add agents, alpha may not.
    body = {"name": "x", "credential": agent.credential.name, "model": "fake-model"}
    refused = api(alpha.admin_key).post("/agents", {**body, "slug": "second"})
    assert refused.status_code == 403, refused.content
    bravo_agent = make_llm_agent(bravo)
    accepted = api(bravo.admin_key).post(
        "/agents", {**body, "slug": "second", "credential": bravo_agent.credential.name}
    )
    assert accepted.status_code == 201, accepted.content


def test_same_base_url_two_tenants_each_key_its_own(api, alpha, bravo, make_llm_agent, fake_llm):
    agents = {"alpha": make_llm_agent(alpha), "bravo": make_llm_agent(bravo)}
    assert agents["alpha"].credential.base_url == agents["bravo"].credential.base_url
    for persona_slug in ["alpha", "bravo", "alpha", "bravo", "bravo", "alpha"]:
        made = agents[persona_slug]
        response = api(made.persona.user_key).post(
            f"/agents/{made.agent.id}/execute", {"input": {"message": persona_slug}}
        )
        assert response.status_code == 200 and response.json()["status"] == "completed"
    for slug, made in agents.items():
        logged = fake_llm.requests(made.key)
        assert len(logged) == 3, (slug, logged)
        # What each tenant sent under its key was its own prompt only.
        prompts = [m["content"] for r in logged for m in r["json"]["messages"]]
        assert all(slug in p for p in prompts if p in ("alpha", "bravo")), prompts
        assert {p for p in prompts if p in ("alpha", "bravo")} == {slug}


def test_one_idempotency_key_under_two_tenants_is_two_executions(api, make_llm_agent, alpha, bravo):
    key = f"shared-{uuid.uuid4().hex}"
    ids = []
    for persona in (alpha, bravo):
        made = make_llm_agent(persona)
        response = api(persona.user_key).post(
            f"/agents/{made.agent.id}/execute",
            {"input": {"message": "once"}},
            headers={"Idempotency-Key": key},
        )
        assert response.status_code == 200, response.content
        ids.append(response.json()["execution_id"])
        with schema_context(persona.schema):
            assert Execution.objects.filter(pk=ids[-1]).exists()
    assert ids[0] != ids[1]
    with schema_context(bravo.schema):
        assert not Execution.objects.filter(pk=ids[0]).exists()
