"""Fixtures for the workflow API tests: workflows made over the API in a persona's tenant, an
echo agent to bind, and PUT/PATCH with JSON bodies."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django_tenants.utils import schema_context

from agents.models import Agent
from tests.agents.conftest import make_agent, make_credential
from tests.conftest import ApiClient, Persona
from tests.workflow_bridge.test_cascade import review_flow


def put(client: ApiClient, path: str, body: Any) -> Any:
    return client.client.put(
        path, json.dumps(body), content_type="application/json", **client._headers({})
    )


def patch(client: ApiClient, path: str, body: Any) -> Any:
    return client.client.patch(
        path, json.dumps(body), content_type="application/json", **client._headers({})
    )


def new_slug(prefix: str = "review") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def create_workflow(client: ApiClient, definition: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post("/workflows", definition or review_flow(new_slug()))
    assert response.status_code == 201, response.content
    return response.json()


def create_resource(
    client: ApiClient, workflow_id: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = client.post(f"/workflows/{workflow_id}/resources", body or {})
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def admin(api: type[ApiClient], alpha: Persona) -> ApiClient:
    return api(alpha.admin_key)


@pytest.fixture
def user(api: type[ApiClient], alpha: Persona) -> ApiClient:
    return api(alpha.user_key)


@pytest.fixture
def readonly(api: type[ApiClient], alpha: Persona) -> ApiClient:
    return api(alpha.readonly_key)


@pytest.fixture
def workflow(admin: ApiClient) -> dict[str, Any]:
    """The review flow (draft → summarising → checking → done), made over the API."""
    return create_workflow(admin)


@pytest.fixture
def echo_agent(alpha: Persona) -> Agent:
    with schema_context(alpha.schema):
        return make_agent(make_credential(kind="echo"), alpha.schema)
