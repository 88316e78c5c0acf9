"""Fixtures: one in-process fake LLM server per session, a unique API key per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agents.providers import ProviderConfig, aclose_all
from tests.conftest import FakeLLM

KINDS = ("openai", "anthropic", "google", "ollama")


@pytest.fixture
def api_key() -> str:
    return f"sk-test-{uuid.uuid4().hex}"


@pytest.fixture
def make_config(fake_llm: FakeLLM, api_key: str) -> Callable[..., ProviderConfig]:
    def make(kind: str, **overrides: Any) -> ProviderConfig:
        values: dict[str, Any] = {
            "kind": kind,
            "base_url": fake_llm.base_url(kind),
            "api_key": api_key,
            "allowed_private": ("127.0.0.1",),
            "connect_timeout": 2.0,
            "read_timeout": 5.0,
        }
        values.update(overrides)
        return ProviderConfig(**values)

    return make


@pytest.fixture(autouse=True)
async def _close_pooled_clients() -> AsyncIterator[None]:
    yield
    await aclose_all()
