"""Virtual models (``cb:*``): an agent names a policy, and each run goes to the tenant's priced
model that the policy picks, over the credential that model is bound to."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from agents.models import AgentVersion, ModelPrice
from agents.services.agents import agent_update
from config.errors import ValidationFailed
from tests.agents.conftest import make_agent, make_credential
from tests.runs import run as run_core


@pytest.fixture
def pool(fake_llm, settings, in_alpha):
    """Three routable models on the fake LLM, each behind its own credential (and API key):
    a cheap fast one, a mid-priced coding one, and an expensive untagged one."""
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    rows = {
        "cheap": ("tiny-fast", Decimal("0.1"), Decimal("0.4"), ["fast", "chat"]),
        "coder": ("code-pro", Decimal("3"), Decimal("15"), ["coding"]),
        "big": ("giant-general", Decimal("30"), Decimal("60"), []),
    }
    keys = {}
    for label, (model, price_in, price_out, tags) in rows.items():
        keys[label] = f"sk-test-{uuid.uuid4().hex}"
        credential = make_credential(
            kind="openai", base_url=fake_llm.base_url("openai"), api_key=keys[label]
        )
        ModelPrice.objects.create(
            credential=credential,
            model=model,
            input_per_million=price_in,
            output_per_million=price_out,
            capabilities=tags,
        )
    for key in keys.values():
        fake_llm.script(key, {"reply": "routed reply"})
    # The agent's own credential answers "echo: ..." if the virtual model were not resolved.
    return keys, make_credential(kind="echo")


def run(schema: str, agent, message: str = "hello"):
    return run_core(schema, agent, message=message)


def test_cost_optimal_runs_on_the_cheapest_model(in_alpha, pool, fake_llm):
    keys, own = pool
    agent = make_agent(own, in_alpha.schema, model="cb:cost-optimal")
    execution = run(in_alpha.schema, agent)
    assert execution.status == "completed" and execution.output == "routed reply"
    assert execution.requested_model == "cb:cost-optimal"
    assert execution.model_used == "tiny-fast"
    assert fake_llm.requests(keys["cheap"])[-1]["json"]["model"] == "tiny-fast"
    assert fake_llm.requests(keys["coder"]) == [] and fake_llm.requests(keys["big"]) == []
    # Billed at the chosen model's price.
    expected = (
        Decimal(execution.input_tokens) * Decimal("0.1")
        + Decimal(execution.output_tokens) * Decimal("0.4")
    ) / Decimal(1_000_000)
    assert execution.input_tokens > 0 and execution.cost == expected


def test_coding_runs_on_the_coding_model_not_the_priciest(in_alpha, pool, fake_llm):
    keys, own = pool
    agent = make_agent(own, in_alpha.schema, model="cb:coding")
    execution = run(in_alpha.schema, agent, "write a function")
    assert execution.status == "completed" and execution.output == "routed reply"
    assert execution.model_used == "code-pro"
    sent = fake_llm.requests(keys["coder"])[-1]["json"]
    assert sent["model"] == "code-pro"
    assert sent["messages"][-1]["content"] == "write a function"
    assert fake_llm.requests(keys["cheap"]) == [] and fake_llm.requests(keys["big"]) == []


def test_disabled_model_is_not_chosen(in_alpha, pool, fake_llm):
    keys, own = pool
    ModelPrice.objects.filter(model="tiny-fast").update(enabled=False)
    agent = make_agent(own, in_alpha.schema, model="cb:cost-optimal")
    execution = run(in_alpha.schema, agent)
    assert execution.model_used == "code-pro"
    assert fake_llm.requests(keys["cheap"]) == []


def test_unknown_virtual_model_is_refused_at_save(in_alpha, pool):
    _, own = pool
    with pytest.raises(ValidationFailed) as refused:
        make_agent(own, in_alpha.schema, slug="nope-agent", model="cb:nope")
    assert refused.value.message.startswith("model:")
    assert "cb:cost-optimal" in refused.value.message  # tells the user what exists

    agent = make_agent(own, in_alpha.schema, model="cb:cost-optimal")
    with pytest.raises(ValidationFailed) as refused:
        agent_update(
            agent=agent, changes={"model": "cb:nope"}, actor="tests", schema_name=in_alpha.schema
        )
    assert refused.value.message.startswith("model:")
    with schema_context(in_alpha.schema):
        agent.refresh_from_db()
        assert agent.model == "cb:cost-optimal" and agent.version == 1
        assert AgentVersion.objects.filter(agent=agent).count() == 1
