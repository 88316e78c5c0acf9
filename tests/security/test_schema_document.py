"""The OpenAPI document says what the endpoints answer (schemathesis found these gaps)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


@pytest.fixture(scope="module")
def document(django_db_setup: None, django_db_blocker: Any) -> dict[str, Any]:
    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", {"format": "json"}, HTTP_HOST="localhost")
    assert response.status_code == 200
    return response.json()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def test_every_operation_documents_the_shared_error_answers(document):
    assert document["components"]["schemas"]["Error"]["required"] == ["error", "request_id"]
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        expected = {"400", "401", "403", "404", "429", "503"}
        if method != "get":
            expected.add("409")
        if "requestBody" in operation:
            expected |= {"413", "415"}
        assert expected <= set(responses), (method, path, sorted(responses))
        for status, response in responses.items():
            if status[0] in "45" and path != "/usage":  # /usage documents its own
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Error", (method, path, status)


def _schema_of(document: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    schema = document["paths"][path][method]["responses"][status]["content"]["application/json"][
        "schema"
    ]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_the_agent_list_is_documented_as_its_envelope(document):
    listed = _schema_of(document, "/agents", "get", "200")
    assert listed["type"] == "object" and listed["properties"]["agents"]["type"] == "array"


def test_identity_and_key_endpoints_document_their_bodies_and_statuses(document):
    token = document["paths"]["/auth/token"]["post"]
    assert "201" in token["responses"] and "200" not in token["responses"]
    assert "access_token" in _schema_of(document, "/auth/token", "post", "201")["properties"]
    assert "requestBody" in token
    created = _schema_of(document, "/api-keys", "post", "201")
    assert {"key", "id", "role"} <= set(created["properties"])
    assert "api_keys" in _schema_of(document, "/api-keys", "get", "200")["properties"]
    revoke = document["paths"]["/api-keys/{key_id}"]["delete"]["responses"]
    assert "200" in revoke and "204" not in revoke
    assert "permissions" in _schema_of(document, "/auth/whoami", "get", "200")["properties"]
