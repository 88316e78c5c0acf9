"""GET /models: what a tenant may call, its virtual models and prices; never another tenant's."""

from __future__ import annotations

from decimal import Decimal

from django_tenants.utils import schema_context

from agents.models import ModelPrice
from tests.agents.conftest import make_agent, make_credential


def test_models_lists_the_tenants_own_models_virtual_models_and_prices(api, alpha, bravo):
    with schema_context(alpha.schema):
        credential = make_credential(kind="openai", base_url="https://llm.example.com/v1")
        ModelPrice.objects.create(
            credential=credential,
            model="gpt-fast",
            input_per_million=Decimal("0.15"),
            output_per_million=Decimal("0.60"),
            capabilities=["fast"],
        )
        ModelPrice.objects.create(model="gpt-agent", input_per_million=Decimal("1"))
        ModelPrice.objects.create(model="gpt-off", enabled=False)
        make_agent(credential, alpha.schema, model="gpt-agent")
    body = api(alpha.readonly_key).get("/models").json()
    assert [(m["model"], m["routable"]) for m in body["models"]] == [
        ("gpt-agent", False),
        ("gpt-fast", True),
    ]
    fast = body["models"][1]
    assert fast["credential"] == credential.name and fast["provider"] == "openai"
    assert (fast["input_per_million"], fast["output_per_million"]) == ("0.15", "0.6")
    assert body["models"][0]["input_per_million"] == "1"
    assert {v["model"] for v in body["virtual_models"]} >= {"auto", "cb:fastest"}
    assert all(v["available"] for v in body["virtual_models"])
    assert [p["model"] for p in body["prices"]] == ["gpt-agent"]
    # Another tenant sees none of it, and no virtual model is available to it.
    other = api(bravo.readonly_key).get("/models").json()
    assert other["models"] == [] and other["prices"] == []
    assert not any(v["available"] for v in other["virtual_models"])
    assert api(None).get("/models").status_code == 401
