"""The security cases run with the fixtures of the API, limits and worker tests, plus an
"estate": one committed object of every kind in a tenant, for the cross-tenant probes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django_tenants.utils import schema_context

from tests.agents.conftest import make_agent, make_credential
from tests.api.conftest import live_agent, make_llm_agent  # noqa: F401  (fixtures)
from tests.conftest import ApiClient, Persona
from tests.limits.conftest import plan_on  # noqa: F401  (fixture)
from tests.runs import run, store_queued
from tests.worker.conftest import clean_queue, spawn_worker  # noqa: F401  (fixtures)
from tests.workflow_bridge.test_cascade import review_flow
from tests.ws.conftest import ws  # noqa: F401  (fixture)


@dataclass
class Estate:
    """One of everything in ``persona``'s schema, by the name of the path parameter that
    addresses it; ``secrets`` are strings that must never reach anyone else."""

    persona: Persona
    ids: dict[str, str]
    names: list[str] = field(default_factory=list)
    llm_key: str = ""

    @property
    def marks(self) -> list[str]:
        """Every id and name of this estate (what another tenant must never see)."""
        return [value for value in (*self.ids.values(), *self.names) if len(value) >= 6]


def build_estate(persona: Persona, fake_llm: Any) -> Estate:
    """Commits (the caller runs in a transactional test): a live server sees it."""
    tag = uuid.uuid4().hex[:8]
    llm_key = f"sk-estate-{uuid.uuid4().hex}"
    admin = ApiClient(persona.admin_key)
    with schema_context(persona.schema):
        credential = make_credential(
            kind="openai",
            base_url=f"{fake_llm.url}/v1",
            api_key=llm_key,
            name=f"{persona.slug}-cred-{tag}",
        )
        agent = make_agent(
            credential, persona.schema, slug=f"{persona.slug}-agent-{tag}", retry_max_attempts=1
        )
    completed = run(persona.schema, agent, message="estate")
    queued = store_queued(persona.schema, agent)
    price = admin.post("/model-prices", {"model": f"{persona.slug}-model-{tag}"})
    assert price.status_code == 201, price.content
    server = admin.post(
        "/mcp-servers",
        {"name": f"{persona.slug}-mcp-{tag}", "url": "http://127.0.0.1:9/mcp"},
    )
    assert server.status_code == 201, server.content
    key = admin.post("/api-keys", {"name": f"{persona.slug}-key-{tag}", "role": "readonly"})
    assert key.status_code == 201, key.content
    workflow = admin.post("/workflows", review_flow(f"{persona.slug}-flow-{tag}"))
    assert workflow.status_code == 201, workflow.content
    workflow_id = workflow.json()["id"]
    resource = admin.post(f"/workflows/{workflow_id}/resources", {})
    assert resource.status_code == 201, resource.content
    state_binding = admin.post(
        f"/workflows/{workflow_id}/state-agents", {"place": "summarising", "agent": agent.slug}
    )
    assert state_binding.status_code == 201, state_binding.content
    activity_binding = admin.post(
        f"/workflows/{workflow_id}/activity-agents", {"activity": "submit", "agent": agent.id}
    )
    assert activity_binding.status_code == 201, activity_binding.content
    ids = {
        "agent_id": agent.id,
        "execution_id": completed.id,
        "queued_execution_id": queued.id,
        "credential_id": credential.id,
        "price_id": str(price.json()["id"]),
        "server_id": str(server.json()["id"]),
        "key_id": str(key.json()["id"]),
        "workflow_id": workflow_id,
        "resource_id": str(resource.json()["id"]),
        "binding_id": str(state_binding.json()["id"]),
        "activity_binding_id": str(activity_binding.json()["id"]),
        "rule_id": "has-summary",
        "activity_id": "submit",
    }
    return Estate(
        persona=persona,
        ids={name: str(value) for name, value in ids.items()},
        names=[credential.name, agent.slug, f"{persona.slug}-flow-{tag}"],
        llm_key=llm_key,
    )


@pytest.fixture
def make_estate(
    committed_personas: dict[str, Persona], fake_llm: Any, settings: Any
) -> Iterator[Callable[[str], Estate]]:
    """``make_estate("alpha")``; the API keys and MCP servers it made go at teardown (the
    personas' fixture wipes agents, executions, credentials, prices and workflows)."""
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    made: list[Estate] = []

    def make(slug: str) -> Estate:
        estate = build_estate(committed_personas[slug], fake_llm)
        made.append(estate)
        return estate

    yield make
    from agents.models import IdempotencyRecord, McpServer

    for estate in made:
        with schema_context(estate.persona.schema):
            McpServer.objects.all().delete()
            IdempotencyRecord.objects.all().delete()
