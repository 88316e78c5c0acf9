from __future__ import annotations

import json

from django.test import Client


def test_errors_share_one_shape_and_quote_the_request_id(api, alpha):
    response = api(None).get("/api-keys", headers={"X-Request-ID": "req-123"})
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["request_id"] == "req-123" == response["X-Request-ID"]


def test_every_response_carries_a_request_id(api, alpha):
    response = api(alpha.user_key).get("/auth/whoami")
    assert len(response["X-Request-ID"]) == 32


def test_unsafe_request_ids_are_replaced(api, alpha):
    response = api(alpha.user_key).get("/auth/whoami", headers={"X-Request-ID": "a" * 300})
    assert response["X-Request-ID"] != "a" * 300


def test_malformed_json_is_a_400_parse_error(alpha):
    response = Client().post(
        "/api-keys",
        "{not json",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {alpha.admin_key}",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_oversized_body_is_413(alpha, settings):
    body = json.dumps({"name": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10), "role": "user"})
    response = Client().post(
        "/api-keys",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {alpha.admin_key}",
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_unknown_tenant_path_is_404_json(api, alpha):
    response = api(alpha.user_key).get("/no-such-endpoint")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
