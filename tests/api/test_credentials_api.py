"""/credentials: provider credentials managed over REST by a tenant's operators.

Secrets are write-only (never in an answer or an audit entry), base URLs are SSRF-checked,
a credential in use is not deleted, the test-connection call goes through the provider layer
and its SSRF-guarded transport, and another tenant's credential answers 404 everywhere.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from agents.models import ModelPrice, ProviderCredential
from agents.services.credentials import provider_config_for
from tenants.audit.models import AuditLog
from tests.agents.conftest import make_agent, make_credential
from tests.api.conftest import patch

KEY_CANARY = "sk-canary-key-7f3a9c1e5b2d4f60"
HEADER_CANARY = "org-canary-header-8e2b6d4a1c3f"
PUBLIC_URL = "https://api.openai.com/v1"


def _secrets_absent(text: str) -> None:
    assert KEY_CANARY not in text and HEADER_CANARY not in text


def _create(client: Any, **body: Any) -> Any:
    data = {
        "name": "main",
        "kind": "openai",
        "base_url": PUBLIC_URL,
        "api_key": KEY_CANARY,
        "extra_headers": {"OpenAI-Organization": HEADER_CANARY},
        **body,
    }
    return client.post("/credentials", data)


def _audit_text(schema: str) -> str:
    with schema_context(schema):
        entries = AuditLog.objects.filter(target_type="provider_credential")
        return json.dumps([[e.action, e.target_id, e.details] for e in entries])


def _error_fields(response: Any) -> set[str]:
    return set(response.json()["error"]["details"])


@pytest.fixture
def fake_openai(fake_llm: Any, settings: Any) -> Any:
    """The fake LLM server reachable although it listens on 127.0.0.1."""
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    return fake_llm


def test_create_read_update_delete_never_returning_secrets(api, alpha):
    admin = api(alpha.admin_key)
    created = _create(admin)
    assert created.status_code == 201, created.json()
    body = created.json()
    assert created["Location"] == f"/credentials/{body['id']}"
    assert body["name"] == "main" and body["kind"] == "openai"
    assert body["base_url"] == PUBLIC_URL
    assert body["has_api_key"] is True
    assert body["extra_header_names"] == ["OpenAI-Organization"]
    assert "api_key" not in body and "extra_headers" not in body
    _secrets_absent(created.content.decode())

    listed = admin.get("/credentials")
    assert [c["id"] for c in listed.json()["credentials"]] == [body["id"]]
    by_id = admin.get(f"/credentials/{body['id']}")
    by_name = admin.get("/credentials/main")
    assert by_id.json() == by_name.json() == body
    for response in (listed, by_id, by_name):
        _secrets_absent(response.content.decode())

    # Without api_key/extra_headers the stored secrets stay.
    renamed = patch(admin, f"/credentials/{body['id']}", {"name": "primary"})
    assert renamed.status_code == 200, renamed.json()
    assert renamed.json()["name"] == "primary" and renamed.json()["has_api_key"] is True
    _secrets_absent(renamed.content.decode())
    with schema_context(alpha.schema):
        config = provider_config_for(ProviderCredential.objects.get(pk=body["id"]))
    assert config.api_key == KEY_CANARY
    assert config.extra_headers == {"OpenAI-Organization": HEADER_CANARY}

    # A new key replaces the old one; "" removes the key, {} the headers.
    patch(admin, "/credentials/primary", {"api_key": "sk-replacement-1234"})
    with schema_context(alpha.schema):
        config = provider_config_for(ProviderCredential.objects.get(pk=body["id"]))
    assert config.api_key == "sk-replacement-1234"
    cleared = patch(admin, "/credentials/primary", {"api_key": "", "extra_headers": {}})
    assert cleared.json()["has_api_key"] is False
    assert cleared.json()["extra_header_names"] == []

    assert admin.delete(f"/credentials/{body['id']}").status_code == 204
    assert admin.get(f"/credentials/{body['id']}").status_code == 404
    with schema_context(alpha.schema):
        assert not ProviderCredential.objects.filter(pk=body["id"]).exists()

    audit = _audit_text(alpha.schema)
    with schema_context(alpha.schema):
        actions = list(
            AuditLog.objects.filter(target_id=body["id"])
            .order_by("created_at", "id")
            .values_list("action", flat=True)
        )
    assert actions == [
        "credential.create",
        "credential.update",
        "credential.update",
        "credential.update",
        "credential.delete",
    ]
    assert "sk-replacement-1234" not in audit
    _secrets_absent(audit)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest",
        "http://10.0.0.1/v1",
        "http://127.0.0.1:11434",
        "http://[::1]/v1",
        "http://0x7f000001/v1",
        "http://metadata.google.internal/v1",
        "file:///etc/passwd",
    ],
)
def test_a_base_url_reaching_private_or_metadata_addresses_is_refused(api, alpha, url):
    admin = api(alpha.admin_key)
    refused = _create(admin, base_url=url)
    assert refused.status_code == 400, refused.json()
    assert _error_fields(refused) == {"base_url"}
    assert refused.json()["error"]["message"].startswith("base_url:")
    _secrets_absent(refused.content.decode())
    # Not even an echo credential (which never calls out) stores such a URL.
    echo = _create(admin, kind="echo", base_url=url)
    assert echo.status_code == 400 and _error_fields(echo) == {"base_url"}

    stored = _create(admin, name="ok").json()
    moved = patch(admin, f"/credentials/{stored['id']}", {"base_url": url, "api_key": "k"})
    assert moved.status_code == 400 and _error_fields(moved) == {"base_url"}
    with schema_context(alpha.schema):
        assert list(ProviderCredential.objects.values_list("base_url", flat=True)) == [PUBLIC_URL]


def test_bodies_are_checked_field_by_field(api, alpha):
    admin = api(alpha.admin_key)
    cases = [
        ({"kind": "openai"}, "name"),
        ({"name": "x"}, "kind"),
        ({"name": "x", "kind": "mystery"}, "kind"),
        ({"name": "  ", "kind": "echo"}, "name"),
        ({"name": "x", "kind": "echo", "api_key": 42}, "api_key"),
        ({"name": "x", "kind": "echo", "extra_headers": ["a"]}, "extra_headers"),
        ({"name": "x", "kind": "echo", "extra_headers": {"Host": "evil"}}, "extra_headers"),
        ({"name": "x", "kind": "echo", "extra_headers": {"X-A": "1\r\nX-B: 2"}}, "extra_headers"),
        ({"name": "x", "kind": "echo", "api_key_encrypted": "kid$forged"}, "api_key_encrypted"),
        ({"name": "x", "kind": "echo", "id": str(uuid.uuid4())}, "id"),
    ]
    for body, field in cases:
        response = admin.post("/credentials", body)
        assert response.status_code == 400, (body, response.json())
        assert _error_fields(response) == {field}, (body, response.json())
    assert admin.post("/credentials", ["not", "an", "object"]).status_code == 400
    with schema_context(alpha.schema):
        assert not ProviderCredential.objects.exists()

    assert _create(admin).status_code == 201
    duplicate = _create(admin, kind="echo", base_url="")
    assert duplicate.status_code == 409 and _error_fields(duplicate) == {"name"}
    other = _create(admin, name="other").json()
    taken = patch(admin, f"/credentials/{other['id']}", {"name": "main"})
    assert taken.status_code == 409
    assert patch(admin, f"/credentials/{other['id']}", {}).status_code == 400


def test_a_stored_key_never_follows_the_base_url_to_another_host(api, alpha):
    admin = api(alpha.admin_key)
    credential = _create(admin).json()
    moved = patch(admin, f"/credentials/{credential['id']}", {"base_url": "https://example.com/v1"})
    assert moved.status_code == 400
    assert "api_key" in _error_fields(moved)
    with schema_context(alpha.schema):
        assert ProviderCredential.objects.get(pk=credential["id"]).base_url == PUBLIC_URL
    again = patch(
        admin,
        f"/credentials/{credential['id']}",
        {"base_url": "https://example.com/v1", "api_key": "sk-new-host", "extra_headers": {}},
    )
    assert again.status_code == 200, again.json()
    assert again.json()["base_url"] == "https://example.com/v1"


def test_a_credential_in_use_is_not_deleted_and_the_answer_names_the_users(api, alpha):
    admin = api(alpha.admin_key)
    with schema_context(alpha.schema):
        used = make_credential(kind="echo", name="used")
        spare = make_credential(kind="echo", name="spare")
        priced = make_credential(kind="echo", name="priced")
        make_agent(used, alpha.schema, slug="direct-user")
        make_agent(
            spare,
            alpha.schema,
            slug="fallback-user",
            fallback_models=[{"model": "m", "credential": "priced"}],
        )
        ModelPrice.objects.create(credential=priced, model="gpt-priced")

    refused = admin.delete(f"/credentials/{used.id}")
    assert refused.status_code == 409
    assert refused.json()["error"]["details"] == {"agents": ["direct-user"], "model_prices": []}
    assert "direct-user" in refused.json()["error"]["message"]

    refused = admin.delete("/credentials/priced")
    assert refused.status_code == 409
    assert refused.json()["error"]["details"] == {
        "agents": ["fallback-user"],
        "model_prices": ["gpt-priced"],
    }
    message = refused.json()["error"]["message"]
    assert "fallback-user" in message and "gpt-priced" in message
    # Agents' fallbacks name it by name: a rename would break them.
    renamed = patch(admin, "/credentials/priced", {"name": "renamed"})
    assert renamed.status_code == 409 and "fallback-user" in renamed.json()["error"]["message"]

    with schema_context(alpha.schema):
        assert ProviderCredential.objects.count() == 3
        assert ModelPrice.objects.filter(credential=priced).count() == 1
        unused = make_credential(kind="echo", name="unused")
    assert admin.delete(f"/credentials/{unused.id}").status_code == 204


@pytest.mark.parametrize("kind", ["openai", "anthropic", "google", "ollama"])
def test_test_connection_makes_one_small_call_through_the_provider(api, alpha, fake_openai, kind):
    key = f"sk-test-{uuid.uuid4().hex}"
    admin = api(alpha.admin_key)
    credential = admin.post(
        "/credentials",
        {"name": "fake", "kind": kind, "base_url": fake_openai.base_url(kind), "api_key": key},
    ).json()
    fake_openai.script(key, {"reply": "pong"})

    tested = admin.post(f"/credentials/{credential['id']}/test", {"model": "fake-model"})
    assert tested.status_code == 200, tested.json()
    result = tested.json()
    assert result["ok"] is True and "error" not in result
    assert isinstance(result["latency_ms"], int) and result["latency_ms"] >= 0
    assert result["model"] == "fake-model"
    assert key not in tested.content.decode()
    logged = fake_openai.requests(key)
    assert len(logged) == 1
    assert "fake-model" in json.dumps(logged[0]["json"]) + logged[0]["path"]

    with schema_context(alpha.schema):
        entry = AuditLog.objects.filter(action="credential.test").get()
    assert entry.outcome == "success" and entry.target_id == credential["id"]
    assert key not in json.dumps(entry.details)


def test_test_connection_defaults_to_a_model_of_the_credential(api, alpha, fake_openai):
    key = f"sk-test-{uuid.uuid4().hex}"
    admin = api(alpha.admin_key)
    credential = admin.post(
        "/credentials",
        {
            "name": "fake",
            "kind": "openai",
            "base_url": fake_openai.base_url("openai"),
            "api_key": key,
        },
    ).json()
    unnamed = admin.post(f"/credentials/{credential['id']}/test")
    assert unnamed.status_code == 400 and _error_fields(unnamed) == {"model"}
    assert fake_openai.requests(key) == []

    with schema_context(alpha.schema):
        stored = ProviderCredential.objects.get(pk=credential["id"])
        ModelPrice.objects.create(credential=stored, model="priced-model")
    tested = admin.post(f"/credentials/{credential['id']}/test").json()
    assert tested["ok"] is True and tested["model"] == "priced-model"
    (logged,) = fake_openai.requests(key)
    assert logged["json"]["model"] == "priced-model"
    assert logged["json"]["max_tokens"] == 1


@pytest.mark.parametrize(
    ("step", "kind", "status_code"),
    [
        ({"status": 401, "message": "invalid api key"}, "authentication", 401),
        ({"status": 500, "message": "upstream broke"}, "server_error", 500),
        ({"status": 429, "retry_after": 1}, "rate_limit", 429),
        ({"reset_mid_stream": True, "reply": "pong pong pong"}, "network_error", None),
    ],
)
def test_a_failing_upstream_is_a_200_saying_what_failed(
    api, alpha, fake_openai, step, kind, status_code
):
    key = f"sk-test-{uuid.uuid4().hex}"
    admin = api(alpha.admin_key)
    credential = admin.post(
        "/credentials",
        {
            "name": "fake",
            "kind": "openai",
            "base_url": fake_openai.base_url("openai"),
            "api_key": key,
        },
    ).json()
    fake_openai.script(key, step)
    tested = admin.post(f"/credentials/{credential['id']}/test", {"model": "fake-model"})
    assert tested.status_code == 200
    result = tested.json()
    assert result["ok"] is False, result
    assert result["error"]["kind"] == kind
    assert result["error"]["status_code"] == status_code
    assert result["error"]["message"]
    assert key not in tested.content.decode()
    assert len(fake_openai.requests(key)) == 1  # one call, no retries
    with schema_context(alpha.schema):
        entry = AuditLog.objects.filter(action="credential.test").get()
    assert entry.outcome == "failure" and entry.details["error_kind"] == kind


def test_test_connection_goes_through_the_ssrf_guarded_transport(api, alpha, fake_openai, settings):
    key = f"sk-test-{uuid.uuid4().hex}"
    admin = api(alpha.admin_key)
    credential = admin.post(
        "/credentials",
        {
            "name": "fake",
            "kind": "openai",
            "base_url": fake_openai.base_url("openai"),
            "api_key": key,
        },
    ).json()
    assert credential["base_url"].startswith("http://127.0.0.1:")
    # The operator withdrew the allow-list entry since the credential was saved.
    settings.PROVIDER_ALLOWED_PRIVATE = []
    tested = admin.post(f"/credentials/{credential['id']}/test", {"model": "fake-model"})
    assert tested.status_code == 200
    assert tested.json()["ok"] is False
    assert tested.json()["error"]["kind"] == "blocked_url"
    assert fake_openai.requests(key) == []


def test_only_operators_manage_credentials(api, alpha, fake_openai):
    key = f"sk-test-{uuid.uuid4().hex}"
    with schema_context(alpha.schema):
        credential = make_credential(
            kind="openai", base_url=fake_openai.base_url("openai"), api_key=key, name="kept"
        )
    for role_key in (alpha.user_key, alpha.readonly_key):
        client = api(role_key)
        calls = [
            client.get("/credentials"),
            client.post("/credentials", {"name": "new", "kind": "echo"}),
            client.get(f"/credentials/{credential.id}"),
            patch(client, f"/credentials/{credential.id}", {"name": "pwned"}),
            client.delete(f"/credentials/{credential.id}"),
            client.post(f"/credentials/{credential.id}/test", {"model": "fake-model"}),
        ]
        for response in calls:
            assert response.status_code == 403, (response.request, response.content)
    assert api(None).get("/credentials").status_code == 401
    with schema_context(alpha.schema):
        assert list(ProviderCredential.objects.values_list("name", flat=True)) == ["kept"]
    assert fake_openai.requests(key) == []


def test_another_tenant_gets_404_on_every_credential_url(api, alpha, bravo, fake_openai):
    key = f"sk-test-{uuid.uuid4().hex}"
    with schema_context(alpha.schema):
        credential = make_credential(
            kind="openai", base_url=fake_openai.base_url("openai"), api_key=key, name="alpha-only"
        )
    client = api(bravo.admin_key)
    for ref in (str(credential.id), credential.name):
        calls = [
            client.get(f"/credentials/{ref}"),
            patch(client, f"/credentials/{ref}", {"name": "pwned", "api_key": "sk-pwned"}),
            client.delete(f"/credentials/{ref}"),
            client.post(f"/credentials/{ref}/test", {"model": "fake-model"}),
        ]
        for response in calls:
            assert response.status_code == 404, (response.request, response.content)
            assert "alpha-only" not in response.content.decode()
    assert client.get("/credentials").json() == {"credentials": []}
    # Bravo's own credential of the same name is bravo's: alpha's is untouched.
    assert client.post("/credentials", {"name": "alpha-only", "kind": "echo"}).status_code == 201
    with schema_context(alpha.schema):
        stored = ProviderCredential.objects.get(pk=credential.pk)
        assert stored.name == "alpha-only" and provider_config_for(stored).api_key == key
    assert fake_openai.requests(key) == []


def test_the_openapi_document_lists_the_credential_endpoints(alpha):
    paths = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert set(paths["/credentials"]) >= {"get", "post"}
    assert set(paths["/credentials/{credential_id}"]) >= {"get", "patch", "delete"}
    assert set(paths["/credentials/{credential_id}/test"]) >= {"post"}
