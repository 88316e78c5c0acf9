"""Reliability case 17, the body part: a 10 MB body on any endpoint that takes one is a 413
with the platform's error shape, and nothing is stored. (The other parts are in tests/limits
and tests/engine: see README.md.)"""

from __future__ import annotations

from django.test import Client
from django_tenants.utils import schema_context

from agents.models import Agent, Execution, ModelPrice, ProviderCredential
from tests.agents.conftest import make_agent, make_credential
from tests.conftest import ApiClient
from tests.workflow_bridge.test_cascade import review_flow
from workflow_bridge.models import Resource, Workflow

TEN_MB = 10 * 1024 * 1024


def _counts(schema: str) -> tuple[int, ...]:
    with schema_context(schema):
        return tuple(
            model.objects.count()
            for model in (Agent, Execution, ModelPrice, ProviderCredential, Workflow, Resource)
        )


def test_a_ten_megabyte_body_is_413_everywhere_and_stores_nothing(alpha):
    with schema_context(alpha.schema):
        agent = make_agent(make_credential(kind="echo"), alpha.schema, slug="big-agent")
    workflow = ApiClient(alpha.admin_key).post("/workflows", review_flow("big-flow")).json()
    resource = ApiClient(alpha.admin_key).post(f"/workflows/{workflow['id']}/resources", {})
    resource_id = resource.json()["id"]
    flow = f"/workflows/{workflow['id']}"
    targets = [
        ("post", f"/agents/{agent.id}/execute"),
        ("post", f"/agents/{agent.id}/execute/stream"),
        ("post", "/agents"),
        ("patch", f"/agents/{agent.id}"),
        ("post", "/credentials"),
        ("post", "/model-prices"),
        ("post", "/mcp-servers"),
        ("post", "/api-keys"),
        ("post", "/auth/token"),
        ("post", "/workflows"),
        ("post", "/workflows/import"),
        ("put", flow),
        ("post", f"{flow}/resources"),
        ("post", f"{flow}/rules"),
        ("post", f"{flow}/rules/evaluate"),
        ("post", f"{flow}/state-agents"),
        ("post", f"/resources/{resource_id}/activities/submit"),
        ("post", f"/resources/{resource_id}/trigger-agents"),
    ]
    body = b'{"input": {"message": "' + b"x" * TEN_MB + b'"}}'
    before = _counts(alpha.schema)
    client = Client()
    for method, path in targets:
        response = getattr(client, method)(
            path,
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {alpha.admin_key}",
        )
        assert response.status_code == 413, (method, path, response.status_code)
        error = response.json()["error"]
        assert error["code"] == "payload_too_large", (path, error)
        assert len(response.content) < 2000  # the body is not echoed back
    assert _counts(alpha.schema) == before
