"""Fixtures for the REST/SSE tests: an agent bound to the fake LLM, in alpha's schema."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django_tenants.utils import schema_context

from agents.models import Agent, IdempotencyRecord, ProviderCredential
from tests.agents.conftest import make_agent, make_credential
from tests.conftest import ApiClient, Persona


@dataclass(frozen=True)
class LlmAgent:
    persona: Persona
    agent: Agent
    credential: ProviderCredential
    key: str  # the fake LLM scripts and logs requests per key


def patch(client: ApiClient, path: str, body: Any) -> Any:
    return client.client.patch(
        path, json.dumps(body), content_type="application/json", **client._headers({})
    )


def llm_agent_for(persona: Persona, fake_llm: Any, **overrides: Any) -> LlmAgent:
    """An agent in ``persona``'s schema answering from the fake LLM under a key of its own."""
    key = f"sk-test-{uuid.uuid4().hex}"
    with schema_context(persona.schema):
        credential = make_credential(kind="openai", base_url=f"{fake_llm.url}/v1", api_key=key)
        agent = make_agent(credential, persona.schema, retry_max_attempts=1, **overrides)
    return LlmAgent(persona, agent, credential, key)


@pytest.fixture
def llm_agent(alpha: Persona, fake_llm: Any, settings: Any) -> LlmAgent:
    """An agent in alpha's schema (inside the test's transaction) answering from the fake LLM."""
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    return llm_agent_for(alpha, fake_llm)


@pytest.fixture
def make_llm_agent(fake_llm: Any, settings: Any) -> Any:
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]

    def make(persona: Persona, **overrides: Any) -> LlmAgent:
        return llm_agent_for(persona, fake_llm, **overrides)

    return make


@pytest.fixture
def live_agent(
    committed_personas: dict[str, Persona], fake_llm: Any, settings: Any
) -> Iterator[LlmAgent]:
    """A committed agent (visible to the live server process) in alpha's schema."""
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    made = llm_agent_for(committed_personas["alpha"], fake_llm)
    yield made
    for persona in committed_personas.values():
        with schema_context(persona.schema):
            IdempotencyRecord.objects.all().delete()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class SseEvent:
    id: int | None
    event: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def sse_events(
    source: httpx.Response | Iterator[str], *, stop_after: str | None = None
) -> list[SseEvent]:
    """Parse an SSE body event by event (comments kept as event ':'). ``source`` is a
    response or a line iterator already in use (to read on after a first stop)."""
    events: list[SseEvent] = []
    fields: dict[str, list[str]] = {}
    lines = source.iter_lines() if isinstance(source, httpx.Response) else source
    for line in lines:
        if line == "":
            if fields:
                seq = fields.get("id", [None])[0]
                events.append(
                    SseEvent(
                        int(seq) if seq is not None else None,
                        fields.get("event", ["message"])[0],
                        "\n".join(fields.get("data", [])),
                    )
                )
                fields = {}
                if stop_after is not None and events[-1].event == stop_after:
                    break
            continue
        if line.startswith(":"):
            events.append(SseEvent(None, ":", line[1:].strip()))
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
    return events
