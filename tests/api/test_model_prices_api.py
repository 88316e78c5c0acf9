"""/model-prices: the tenant's price table over REST. Read by every role that reads agents,
changed by operators only; bad rows are refused before any execution reads them; the table's
uniqueness rules answer 409; another tenant's rows answer 404 everywhere."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from agents.models import ModelPrice
from tenants.audit.models import AuditLog
from tests.agents.conftest import make_credential
from tests.api.conftest import patch


def _error_fields(response: Any) -> set[str]:
    return set(response.json()["error"]["details"])


@pytest.fixture
def credential(alpha: Any) -> Any:
    with schema_context(alpha.schema):
        return make_credential(kind="echo", name="alpha-cred")


def test_create_read_update_delete(api, alpha, credential):
    admin = api(alpha.admin_key)
    created = admin.post(
        "/model-prices",
        {
            "model": "gpt-fast",
            "credential": "alpha-cred",
            "input_per_million": "0.15",
            "output_per_million": 0.6,
            "capabilities": ["fast", "coding"],
        },
    )
    assert created.status_code == 201, created.json()
    row = created.json()
    assert created["Location"] == f"/model-prices/{row['id']}"
    assert row == {
        "id": row["id"],
        "model": "gpt-fast",
        "credential": "alpha-cred",
        "credential_id": str(credential.id),
        "input_per_million": "0.15",
        "output_per_million": "0.6",
        "capabilities": ["fast", "coding"],
        "enabled": True,
    }
    with schema_context(alpha.schema):
        stored = ModelPrice.objects.get(pk=row["id"])
    assert stored.input_per_million == Decimal("0.15")
    assert stored.output_per_million == Decimal("0.6")

    # Every role that reads agents reads prices; /models shows the new routable model.
    reader = api(alpha.readonly_key)
    assert reader.get("/model-prices").json() == {"model_prices": [row]}
    assert reader.get(f"/model-prices/{row['id']}").json() == row
    models = reader.get("/models").json()["models"]
    assert [(m["model"], m["credential"]) for m in models] == [("gpt-fast", "alpha-cred")]

    changed = patch(
        admin,
        f"/model-prices/{row['id']}",
        {"input_per_million": "1.250000", "enabled": False, "credential": None},
    )
    assert changed.status_code == 200, changed.json()
    assert changed.json()["input_per_million"] == "1.25"
    assert changed.json()["output_per_million"] == "0.6"  # left out, kept
    assert changed.json()["enabled"] is False
    assert changed.json()["credential"] is None and changed.json()["credential_id"] is None
    assert changed.json()["capabilities"] == ["fast", "coding"]
    assert reader.get("/models").json()["models"] == []  # disabled

    assert admin.delete(f"/model-prices/{row['id']}").status_code == 204
    assert admin.get(f"/model-prices/{row['id']}").status_code == 404
    with schema_context(alpha.schema):
        assert not ModelPrice.objects.exists()
        actions = list(
            AuditLog.objects.filter(target_type="model_price", target_id=str(row["id"]))
            .order_by("created_at", "id")
            .values_list("action", flat=True)
        )
    assert actions == ["model_price.create", "model_price.update", "model_price.delete"]


def test_a_model_has_one_price_per_credential_and_one_without(api, alpha, credential):
    admin = api(alpha.admin_key)
    with schema_context(alpha.schema):
        other = make_credential(kind="echo", name="other-cred")
    for body in (
        {"model": "m"},
        {"model": "m", "credential": "alpha-cred"},
        {"model": "m", "credential": str(other.id)},  # by id as well as by name
    ):
        response = admin.post("/model-prices", body)
        assert response.status_code == 201, (body, response.json())
    for body in ({"model": "m"}, {"model": "m", "credential": "alpha-cred"}):
        duplicate = admin.post("/model-prices", body)
        assert duplicate.status_code == 409, (body, duplicate.json())
        assert _error_fields(duplicate) == {"model"}
        assert "'m'" in duplicate.json()["error"]["message"]
    loose = admin.post("/model-prices", {"model": "n"}).json()
    moved = patch(admin, f"/model-prices/{loose['id']}", {"model": "m"})
    assert moved.status_code == 409
    moved = patch(admin, f"/model-prices/{loose['id']}", {"model": "m", "credential": "alpha-cred"})
    assert moved.status_code == 409
    with schema_context(alpha.schema):
        assert ModelPrice.objects.filter(model="m").count() == 3
        assert ModelPrice.objects.get(pk=loose["id"]).model == "n"


def test_bad_rows_are_refused_naming_the_field(api, alpha, credential):
    admin = api(alpha.admin_key)
    cases = [
        ({}, "model"),
        ({"model": ""}, "model"),
        ({"model": 7}, "model"),
        ({"model": "x" * 201}, "model"),
        ({"model": "auto"}, "model"),
        ({"model": "cb:fastest"}, "model"),
        ({"model": "m", "input_per_million": "-1"}, "input_per_million"),
        ({"model": "m", "input_per_million": "abc"}, "input_per_million"),
        ({"model": "m", "input_per_million": "NaN"}, "input_per_million"),
        ({"model": "m", "input_per_million": True}, "input_per_million"),
        ({"model": "m", "output_per_million": "0.0000001"}, "output_per_million"),
        ({"model": "m", "output_per_million": "1000000"}, "output_per_million"),
        ({"model": "m", "capabilities": "fast"}, "capabilities"),
        ({"model": "m", "capabilities": ["Fast"]}, "capabilities"),
        ({"model": "m", "capabilities": ["fast", "fast"]}, "capabilities"),
        ({"model": "m", "capabilities": [""]}, "capabilities"),
        ({"model": "m", "capabilities": [1]}, "capabilities"),
        ({"model": "m", "enabled": "yes"}, "enabled"),
        ({"model": "m", "credential": "nope"}, "credential"),
        ({"model": "m", "credential": 5}, "credential"),
        ({"model": "m", "id": 1}, "id"),
    ]
    for body, field in cases:
        response = admin.post("/model-prices", body)
        assert response.status_code == 400, (body, response.json())
        assert _error_fields(response) == {field}, (body, response.json())
    assert admin.post("/model-prices", ["m"]).status_code == 400
    with schema_context(alpha.schema):
        assert not ModelPrice.objects.exists()
    row = admin.post("/model-prices", {"model": "m"}).json()
    assert row["input_per_million"] == "0" and row["capabilities"] == []
    assert patch(admin, f"/model-prices/{row['id']}", {}).status_code == 400
    bad = patch(admin, f"/model-prices/{row['id']}", {"capabilities": ["ok"], "enabled": None})
    assert bad.status_code == 400 and _error_fields(bad) == {"enabled"}
    with schema_context(alpha.schema):
        assert ModelPrice.objects.get(pk=row["id"]).capabilities == []  # nothing half-applied
    for ref in ("abc", "1.0", "9" * 30, str(row["id"] + 1000)):
        assert admin.get(f"/model-prices/{ref}").status_code == 404


def test_only_operators_change_prices(api, alpha):
    with schema_context(alpha.schema):
        row = ModelPrice.objects.create(model="kept", input_per_million=Decimal("2"))
    for role_key in (alpha.user_key, alpha.readonly_key):
        client = api(role_key)
        assert client.get("/model-prices").status_code == 200
        assert client.get(f"/model-prices/{row.pk}").status_code == 200
        for response in (
            client.post("/model-prices", {"model": "new"}),
            patch(client, f"/model-prices/{row.pk}", {"input_per_million": "0"}),
            client.delete(f"/model-prices/{row.pk}"),
        ):
            assert response.status_code == 403, (response.request, response.content)
    assert api(None).get("/model-prices").status_code == 401
    with schema_context(alpha.schema):
        assert [(p.model, p.input_per_million) for p in ModelPrice.objects.all()] == [
            ("kept", Decimal("2"))
        ]


def test_another_tenant_gets_404_on_every_price_url(api, alpha, bravo, credential):
    with schema_context(alpha.schema):
        row = ModelPrice.objects.create(
            credential=credential, model="alpha-only", input_per_million=Decimal("3")
        )
    client = api(bravo.admin_key)
    for response in (
        client.get(f"/model-prices/{row.pk}"),
        patch(client, f"/model-prices/{row.pk}", {"input_per_million": "0"}),
        client.delete(f"/model-prices/{row.pk}"),
    ):
        assert response.status_code == 404, (response.request, response.content)
        assert "alpha-only" not in response.content.decode()
    assert client.get("/model-prices").json() == {"model_prices": []}
    # Nor can bravo attach alpha's credential to a price of its own.
    for ref in ("alpha-cred", str(credential.id)):
        refused = client.post("/model-prices", {"model": "m", "credential": ref})
        assert refused.status_code == 400 and _error_fields(refused) == {"credential"}
    with schema_context(alpha.schema):
        stored = ModelPrice.objects.get(pk=row.pk)
        assert stored.input_per_million == Decimal("3") and stored.credential_id == credential.id
        assert not AuditLog.objects.filter(target_type="model_price").exists()
    with schema_context(bravo.schema):
        assert not ModelPrice.objects.exists()


def test_the_audit_entries_name_fields_not_values(api, alpha):
    admin = api(alpha.admin_key)
    row = admin.post("/model-prices", {"model": "m", "input_per_million": "4.5"}).json()
    with schema_context(alpha.schema):
        entry = AuditLog.objects.get(action="model_price.create")
    assert entry.target_id == str(row["id"]) and entry.actor.startswith("api_key:")
    assert entry.details == {"model": "m", "fields": ["input_per_million", "model"]}
    assert "4.5" not in json.dumps(entry.details)


def test_the_openapi_document_lists_the_price_endpoints(alpha):
    paths = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert set(paths["/model-prices"]) >= {"get", "post"}
    assert set(paths["/model-prices/{price_id}"]) >= {"get", "patch", "delete"}
