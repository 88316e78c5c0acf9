"""Reliability case 4 (property-level authorization): a body that sets ``tenant``, ``status``,
``cost``, ``created_by`` or ``id`` on any writable endpoint is refused with a 400 naming the
field, and nothing stored changes, neither in the caller's tenant nor in the one named.

Each endpoint is called with a body it accepts plus one forged field; the collection (or the
object) is read before and after, in both tenants."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django_tenants.utils import schema_context

from agents.models import Execution
from tests.agents.conftest import make_agent, make_credential
from tests.api.conftest import patch
from tests.conftest import ApiClient, Persona
from tests.workflow_bridge.api.conftest import put
from tests.workflow_bridge.test_cascade import review_flow

FORGED: dict[str, Any] = {
    "tenant": "bravo",
    "status": "completed",
    "cost": "0",
    "created_by": "platform:root",
    "id": "forged-id",
}


def _setup(alpha: Persona) -> dict[str, Any]:
    admin = ApiClient(alpha.admin_key)
    with schema_context(alpha.schema):
        credential = make_credential(kind="echo", name="mass-cred")
        agent = make_agent(credential, alpha.schema, slug="mass-agent")
    price = admin.post("/model-prices", {"model": "mass-model"}).json()
    server = admin.post("/mcp-servers", {"name": "mass-mcp", "url": "http://127.0.0.1:9/mcp"})
    assert server.status_code == 201, server.content
    workflow = admin.post("/workflows", review_flow("mass-flow")).json()
    binding = admin.post(
        f"/workflows/{workflow['id']}/state-agents", {"place": "summarising", "agent": agent.slug}
    ).json()
    activity = admin.post(
        f"/workflows/{workflow['id']}/activity-agents", {"activity": "submit", "agent": agent.id}
    ).json()
    resource = admin.post(f"/workflows/{workflow['id']}/resources", {}).json()
    return {
        "agent": agent,
        "credential": credential,
        "price": price["id"],
        "workflow": workflow["id"],
        "binding": binding["id"],
        "activity": activity["id"],
        "resource": resource["id"],
    }


# (method, path, a body the endpoint accepts, the reads that must not change). Paths and
# bodies are formatted with the objects of ``_setup``.
Endpoint = tuple[str, str, Callable[[dict[str, Any]], Any], list[str]]
ENDPOINTS: list[Endpoint] = [
    (
        "post",
        "/agents",
        lambda o: {"slug": "new-agent", "name": "N", "credential": "mass-cred", "model": "m"},
        ["/agents"],
    ),
    ("patch", "/agents/mass-agent", lambda o: {"name": "Renamed"}, ["/agents/mass-agent"]),
    ("post", "/credentials", lambda o: {"name": "new-cred", "kind": "echo"}, ["/credentials"]),
    (
        "patch",
        "/credentials/{credential.id}",
        lambda o: {"name": "renamed-cred"},
        ["/credentials"],
    ),
    ("post", "/model-prices", lambda o: {"model": "new-model"}, ["/model-prices"]),
    (
        "patch",
        "/model-prices/{price}",
        lambda o: {"input_per_million": "1"},
        ["/model-prices"],
    ),
    (
        "post",
        "/mcp-servers",
        lambda o: {"name": "new-mcp", "url": "http://127.0.0.1:9/mcp"},
        ["/mcp-servers"],
    ),
    ("patch", "/mcp-servers/mass-mcp", lambda o: {"timeout_seconds": 5}, ["/mcp-servers"]),
    ("post", "/api-keys", lambda o: {"role": "readonly", "name": "new-key"}, ["/api-keys"]),
    ("post", "/workflows", lambda o: review_flow("new-flow"), ["/workflows"]),
    (
        "put",
        "/workflows/{workflow}",
        lambda o: {**review_flow("mass-flow"), "name": "Renamed"},
        ["/workflows/{workflow}"],
    ),
    (
        "post",
        "/workflows/{workflow}/resources",
        lambda o: {"data": {"x": 1}},
        ["/workflows/{workflow}/resources"],
    ),
    (
        "post",
        "/workflows/{workflow}/state-agents",
        lambda o: {"place": "checking", "agent": "mass-agent"},
        ["/workflows/{workflow}/state-agents"],
    ),
    (
        "patch",
        "/workflows/{workflow}/state-agents/{binding}",
        lambda o: {"enabled": False},
        ["/workflows/{workflow}/state-agents"],
    ),
    (
        "post",
        "/workflows/{workflow}/activity-agents",
        lambda o: {"activity": "redo", "agent": "mass-agent"},
        ["/workflows/{workflow}/activity-agents"],
    ),
    (
        "patch",
        "/workflows/{workflow}/activity-agents/{activity}",
        lambda o: {"required": False},
        ["/workflows/{workflow}/activity-agents"],
    ),
    (
        "post",
        "/workflows/{workflow}/rules",
        lambda o: {"id": "new-rule", "condition": {"type": "FieldExists", "field": "data.x"}},
        ["/workflows/{workflow}/rules"],
    ),
    (
        "post",
        "/resources/{resource}/activities/submit",
        lambda o: {"data": {}},
        ["/resources/{resource}"],
    ),
    (
        "post",
        "/agents/mass-agent/execute",
        lambda o: {"input": {"message": "hi"}},
        ["/agents/mass-agent/executions"],
    ),
]


def _fmt(template: str, objects: dict[str, Any]) -> str:
    return template.format(**objects)


def _call(client: ApiClient, method: str, path: str, body: Any) -> Any:
    if method == "post":
        return client.post(path, body)
    if method == "put":
        return put(client, path, body)
    return patch(client, path, body)


def _snapshot(client: ApiClient, paths: list[str]) -> list[str]:
    """The reads, without fields that change on their own (timestamps of use)."""
    out = []
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, (path, response.content)
        body = response.json()
        for key in ("api_keys",):
            for row in body.get(key, []):
                row.pop("last_used_at", None)
        out.append(json.dumps(body, sort_keys=True))
    return out


@pytest.mark.parametrize(
    ("method", "template", "body_of", "reads"),
    ENDPOINTS,
    ids=[f"{m.upper()} {p}" for m, p, _, _ in ENDPOINTS],
)
def test_forged_platform_fields_are_refused_and_change_nothing(
    api, alpha, bravo, settings, method, template, body_of, reads
):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]  # the MCP servers' address
    objects = _setup(alpha)
    client, other = api(alpha.admin_key), api(bravo.admin_key)
    path = _fmt(template, objects)
    reads = [_fmt(read, objects) for read in reads]
    bravo_reads = ["/agents", "/credentials", "/workflows", "/api-keys", "/executions"]
    for field, value in FORGED.items():
        body = body_of(objects)
        if field in body:  # a rule's id is its own name, not a platform field
            continue
        before, bravo_before = _snapshot(client, reads), _snapshot(other, bravo_reads)
        with schema_context(alpha.schema):
            executions = Execution.objects.count()
        response = _call(client, method, path, {**body, field: value})
        assert response.status_code == 400, (field, response.status_code, response.content)
        error = response.json()["error"]
        assert field in error["message"], (field, error)
        assert _snapshot(client, reads) == before, field
        assert _snapshot(other, bravo_reads) == bravo_before, field
        with schema_context(alpha.schema):
            assert Execution.objects.count() == executions, field
    # The body without a forged field is accepted: the refusals above were about the field.
    accepted = _call(client, method, path, body_of(objects))
    assert accepted.status_code in (200, 201, 202), (accepted.status_code, accepted.content)


def test_a_token_request_naming_a_tenant_or_principal_is_refused(api, alpha):
    """POST /auth/token takes role and ttl_seconds only: anything else is a 400 naming it."""
    for field in ("tenant", "sub", "principal", "id", "schema"):
        forged = f"x-{uuid.uuid4().hex}"
        response = api(alpha.user_key).post("/auth/token", {field: forged})
        assert response.status_code == 400, (field, response.content)
        assert response.json()["error"]["message"].startswith(f"{field}:"), response.json()
        assert "access_token" not in response.content.decode()
