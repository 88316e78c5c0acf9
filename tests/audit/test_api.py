"""GET /audit-log: keyset pages newest first, filters, a clear 400 per bad parameter, the
permission, the other tenant's view; the admin list filters and stays read-only."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from django.test import Client
from django_tenants.utils import schema_context

from tenants.audit.models import AuditLog
from tenants.audit.services import audit_record
from tests.agents.test_admin import client_for, make_operator


def write(schema: str, n: int, action: str, **kwargs: object) -> list[AuditLog]:
    return [
        audit_record(
            schema_name=schema,
            actor="user:pager",
            action=action,
            target_id=str(i),
            target_type="thing",
            **kwargs,
        )
        for i in range(n)
    ]


def follow(client, url: str) -> dict:
    parts = urlsplit(url)
    response = client.client.get(f"{parts.path}?{parts.query}", **client._headers({}))
    assert response.status_code == 200, response.content
    return response.json()


def test_pages_follow_the_cursor_newest_first_and_do_not_shift(alpha, bravo, api):
    written = write(alpha.schema, 7, "pagetest.write")
    client = api(alpha.admin_key, host=alpha.host)
    first = client.get("/audit-log", action="pagetest.*", limit=3)
    assert first.status_code == 200, first.content
    page = first.json()
    assert [e["id"] for e in page["entries"]] == [e.pk for e in reversed(written)][:3]
    assert page["next_cursor"] and page["next"].startswith("http://alpha.localhost/audit-log?")
    write(alpha.schema, 2, "pagetest.write")  # newer entries: they do not move the pages
    second = follow(client, page["next"])
    third = follow(client, second["next"])
    assert [e["id"] for e in second["entries"] + third["entries"]] == [
        e.pk for e in reversed(written)
    ][3:]
    assert third["next"] is None and third["next_cursor"] is None
    entry = page["entries"][0]
    assert entry["entry_hash"] and entry["prev_hash"] and entry["actor"] == "user:pager"
    # The other tenant sees none of it, with its own credential, cursor or not.
    other = api(bravo.admin_key, host=bravo.host)
    assert other.get("/audit-log", action="pagetest.*").json()["entries"] == []
    assert other.get("/audit-log", cursor=page["next_cursor"], action="pagetest.*").json() == {
        "entries": [],
        "next_cursor": None,
        "next": None,
    }
    assert api(alpha.admin_key, host=bravo.host).get("/audit-log").status_code == 403


def test_filters_by_actor_action_target_and_time(alpha, api):
    (older,) = write(alpha.schema, 1, "filtertest.one")
    audit_record(
        schema_name=alpha.schema,
        actor="user:someone",
        action="filtertest.two",
        target_type="agent",
        target_id="agent-42",
    )
    client = api(alpha.admin_key)

    def ids(**params: object) -> list[str]:
        response = client.get("/audit-log", **params)
        assert response.status_code == 200, response.content
        return [e["action"] for e in response.json()["entries"]]

    assert ids(action="filtertest.one") == ["filtertest.one"]
    assert ids(action="filtertest.*") == ["filtertest.two", "filtertest.one"]
    assert ids(action="filtertest.*", actor="user:someone") == ["filtertest.two"]
    assert ids(target_type="agent", target_id="agent-42") == ["filtertest.two"]
    assert ids(action="filtertest.*", until=older.created_at.isoformat()) == []
    since = (older.created_at - dt.timedelta(microseconds=1)).isoformat()
    assert ids(action="filtertest.*", since=since) == ["filtertest.two", "filtertest.one"]
    assert ids(action="filtertest.*", since="2999-01-01") == []
    assert ids(action="filtertest") == []  # exact unless it ends in ".*"


def test_a_bad_parameter_is_a_400_naming_it(alpha, api):
    client = api(alpha.admin_key)
    cases = {
        "limit": {"limit": "0"},
        "since": {"since": "yesterday"},
        "until": {"since": "2026-02-01", "until": "2026-01-01"},
        "cursor": {"cursor": "bm90LWEtY3Vyc29y"},
        "action": {"action": "exec*tion"},
        "target_id": {"target_id": "x"},
        "colour": {"colour": "blue"},
    }
    for parameter, params in cases.items():
        response = client.get("/audit-log", **params)
        assert response.status_code == 400, (parameter, response.content)
        error = response.json()["error"]
        assert error["message"].startswith(f"{parameter}:"), (parameter, error)
    assert client.get("/audit-log", limit="x").json()["error"]["message"].startswith("limit:")


def test_reading_the_log_needs_audit_read(alpha, api):
    refused = api(alpha.user_key).get("/audit-log")
    assert refused.status_code == 403
    with schema_context(alpha.schema):
        denial = AuditLog.objects.filter(action="permission.denied").latest("id")
    assert denial.details["permission"] == "audit.read"
    assert api().get("/audit-log").status_code in {401, 404}


def test_the_openapi_document_describes_the_endpoint(db):
    document = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = document["paths"]["/audit-log"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {
        "actor",
        "action",
        "target_type",
        "target_id",
        "since",
        "until",
        "cursor",
        "limit",
    } <= names
    assert "400" in operation["responses"] and "403" in operation["responses"]
    page = document["components"]["schemas"]["AuditLogPage"]["properties"]
    assert {"entries", "next_cursor", "next"} <= set(page)


def test_the_admin_list_filters_and_nobody_can_edit(alpha, bravo):
    (entry,) = write(alpha.schema, 1, "admintest.thing")
    operator = make_operator(alpha.schema, "log-reader")
    browser = client_for(operator, alpha.schema, alpha.host)
    listing = browser.get(
        "/admin/audit/auditlog/",
        {"actor_kind": "user", "action_family": "admintest", "outcome": "success"},
    )
    assert listing.status_code == 200
    assert b"admintest.thing" in listing.content
    assert b"admintest.*" in listing.content  # the action family filter offers it
    other = browser.get(
        "/admin/audit/auditlog/", {"actor_kind": "api_key", "action_family": "admintest"}
    )
    assert b"admintest.thing" not in other.content
    assert browser.get("/admin/audit/auditlog/add/").status_code == 403
    detail = browser.get(f"/admin/audit/auditlog/{entry.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert entry.entry_hash.encode() in detail.content
    assert browser.post(f"/admin/audit/auditlog/{entry.pk}/delete/").status_code == 403
    # Bravo's operator does not see alpha's entry.
    bravo_browser = client_for(make_operator(bravo.schema, "log-reader"), bravo.schema, bravo.host)
    seen = bravo_browser.get(f"/admin/audit/auditlog/{entry.pk}/change/")
    assert b"admintest.thing" not in seen.content
