"""OpenAI SDK clients against a live server: alpha's agent answers from the fake LLM."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django_tenants.utils import schema_context
from openai import OpenAI

from agents.models import IdempotencyRecord
from tests.api.conftest import LlmAgent, llm_agent_for
from tests.conftest import Persona
from tests.limits.conftest import plan_on

__all__ = ["plan_on"]  # the plan fixture of the limits tests, for the 429 test

MakeClient = Callable[..., OpenAI]


@pytest.fixture
def openai_client(live_server_url: Any) -> Iterator[MakeClient]:
    """``openai_client(key)``: the official SDK pointed at the live server's ``/v1`` with a
    tenant key and no tenant host (the key names the tenant); no retries of its own."""
    made: list[OpenAI] = []

    def make(key: str, **options: Any) -> OpenAI:
        client = OpenAI(
            base_url=f"{live_server_url.url}/v1", api_key=key, max_retries=0, timeout=20, **options
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def live_llm_agent(
    committed_personas: dict[str, Persona], fake_llm: Any, settings: Any
) -> Iterator[Callable[..., LlmAgent]]:
    """``live_llm_agent(persona="alpha", **agent_fields)``: a committed agent on the fake LLM."""
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]

    def make(persona: str = "alpha", **overrides: Any) -> LlmAgent:
        return llm_agent_for(committed_personas[persona], fake_llm, **overrides)

    yield make
    for persona in committed_personas.values():
        with schema_context(persona.schema):
            IdempotencyRecord.objects.all().delete()
