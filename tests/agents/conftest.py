from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django_tenants.utils import schema_context

from agents.models import Agent, ProviderCredential
from agents.services.agents import agent_create
from agents.services.credentials import credential_save


@pytest.fixture
def in_alpha(alpha) -> Iterator[Any]:
    with schema_context(alpha.schema):
        yield alpha


def make_credential(
    *, kind: str = "echo", base_url: str = "", api_key: str | None = None, name: str | None = None
) -> ProviderCredential:
    return credential_save(
        name=name or f"cred-{uuid.uuid4().hex[:8]}", kind=kind, base_url=base_url, api_key=api_key
    )


def make_agent(credential: ProviderCredential, schema: str, **overrides: Any) -> Agent:
    data: dict[str, Any] = {
        "slug": overrides.pop("slug", f"agent-{uuid.uuid4().hex[:8]}"),
        "name": "Test agent",
        "credential": credential,
        "model": "fake-model",
        "retry_backoff_seconds": 0,
    }
    data.update(overrides)
    return agent_create(data=data, actor="tests", schema_name=schema)
