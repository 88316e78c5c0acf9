"""Agent configuration: validated field by field, versioned on every change, per tenant."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from agents.models import AgentVersion
from agents.services.agents import agent_get, agent_snapshot, agent_update
from config.errors import Conflict, NotFound, ValidationFailed
from tenants.audit.models import AuditLog
from tests.agents.conftest import make_agent, make_credential


def test_every_change_makes_a_new_immutable_version(in_alpha):
    agent = make_agent(make_credential(), in_alpha.schema, system_prompt="v1 prompt")
    assert agent.version == 1 and agent.id.startswith("agent_")
    updated = agent_update(
        agent=agent,
        changes={"system_prompt": "v2 prompt"},
        actor="tests",
        schema_name=in_alpha.schema,
    )
    assert updated.version == 2
    versions = {
        v.version: v.config["system_prompt"] for v in AgentVersion.objects.filter(agent=agent)
    }
    assert versions == {1: "v1 prompt", 2: "v2 prompt"}
    same = agent_update(
        agent=updated,
        changes={"system_prompt": "v2 prompt"},
        actor="tests",
        schema_name=in_alpha.schema,
    )
    assert same.version == 2
    assert AuditLog.objects.filter(action="agent.update", target_id=agent.id).count() == 1


def test_agent_found_by_id_or_slug(in_alpha):
    agent = make_agent(make_credential(), in_alpha.schema, slug="by-slug")
    assert agent_get("by-slug").pk == agent.pk == agent_get(agent.id).pk


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 10_000_000}, "max_tokens"),
        ({"model": "cb:nonsense"}, "model"),
        ({"output_schema": {"type": "not-a-type"}}, "output_schema"),
        ({"input_mapping": {"x": "bad path!"}}, "input_mapping"),
        ({"retry_on_errors": ["everything"]}, "retry_on_errors"),
        ({"stop_sequences": "STOP"}, "stop_sequences"),
        (
            {"tools": [{"name": "t", "kind": "agent", "config": {"agent": "missing"}}]},
            "tools[0].config.agent",
        ),
        (
            {
                "tools": [
                    {"name": "t", "kind": "http", "config": {"url": "http://169.254.169.254/"}}
                ]
            },
            "tools[0].config.url",
        ),
        (
            {"fallback_models": [{"model": "m", "credential": "nope"}]},
            "fallback_models[0].credential",
        ),
        ({"tenant": "bravo"}, "tenant"),
        ({"slug": "Bad Slug"}, "slug"),
    ],
)
def test_bad_configuration_names_the_field(in_alpha, changes, field):
    agent = make_agent(make_credential(), in_alpha.schema)
    with pytest.raises(ValidationFailed) as caught:
        agent_update(agent=agent, changes=changes, actor="tests", schema_name=in_alpha.schema)
    assert caught.value.message.startswith(f"{field}:")
    agent.refresh_from_db()
    assert agent.version == 1  # nothing stored


def test_duplicate_slug_conflicts(in_alpha):
    credential = make_credential()
    make_agent(credential, in_alpha.schema, slug="taken")
    with pytest.raises(Conflict):
        make_agent(credential, in_alpha.schema, slug="taken")


def test_snapshot_carries_the_configuration_and_fallbacks(in_alpha):
    primary = make_credential(kind="openai", base_url="https://api.openai.com/v1", api_key="k1")
    other = make_credential(
        kind="anthropic", base_url="https://api.anthropic.com", api_key="k2", name="backup"
    )
    agent = make_agent(
        primary,
        in_alpha.schema,
        fallback_models=["gpt-small", {"model": "claude", "credential": "backup"}],
        output_schema={"type": "object"},
        retry_max_attempts=2,
    )
    snapshot = agent_snapshot(agent_get(agent.id))
    assert snapshot.provider.api_key == "k1" and snapshot.retry.max_attempts == 2
    assert [(t.provider.kind, t.model) for t in snapshot.fallbacks] == [
        ("openai", "gpt-small"),
        ("anthropic", "claude"),
    ]
    assert other.name == "backup"


def test_agents_are_invisible_to_other_tenants(alpha, bravo):
    with schema_context(alpha.schema):
        agent = make_agent(make_credential(), alpha.schema, slug="alpha-secret")
    with schema_context(bravo.schema), pytest.raises(NotFound):
        agent_get(agent.id)
    with schema_context(bravo.schema), pytest.raises(NotFound):
        agent_get("alpha-secret")
