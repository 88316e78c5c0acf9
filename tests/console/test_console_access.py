"""Who gets a console, and with which role: the console mints a tenant token for the signed-in
operator, with the role their Django permissions give (never more), and none for the others."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from tests.agents.test_admin import client_for
from tests.agents.test_operator_permissions import make_user

TOKEN_SCRIPT = re.compile(r'<script id="console-token" type="application/json">(.*?)</script>')


def console_token(response) -> str:
    assert response.status_code == 200, response.status_code
    match = TOKEN_SCRIPT.search(response.content.decode())
    assert match, "no token on the console page"
    return json.loads(match.group(1))


def whoami(token: str) -> dict:
    response = Client().get(
        "/auth/whoami", HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize(
    ("permissions", "flags", "role", "can_run"),
    [
        ((), {"superuser": True}, "admin", True),
        (("agents.run_agent",), {}, "user", True),
        (("agents.view_execution",), {}, "readonly", False),
        (("agents.view_agent",), {}, "readonly", False),
    ],
)
def test_console_token_carries_the_role_the_permissions_give(
    alpha, permissions, flags, role, can_run
):
    user = make_user(alpha.schema, "console-op", *permissions, **flags)
    response = client_for(user, alpha.schema, alpha.host).get("/console/")
    identity = whoami(console_token(response))
    assert identity["tenant"] == "alpha" and identity["role"] == role
    assert identity["principal"].startswith("token:")
    html = response.content.decode()
    run_button = re.search(r"<button id=\"run\"[^>]*>", html).group(0)
    assert ("disabled" in run_button) is not can_run


@pytest.mark.parametrize(
    ("permissions", "flags"),
    [
        ((), {}),  # staff, but nothing to do with agents
        (("agents.change_agent",), {}),
        (("agents.run_agent",), {"staff": False}),  # not staff: no admin, no console
    ],
)
def test_operator_without_a_role_is_refused_with_a_reason_and_no_token(alpha, permissions, flags):
    user = make_user(alpha.schema, "no-role", *permissions, **flags)
    response = client_for(user, alpha.schema, alpha.host).get("/console/")
    assert response.status_code == 403
    body = response.content.decode()
    assert "Can run agents" in body
    assert "console-token" not in body and "eyJ" not in body


def test_anonymous_and_inactive_users_are_sent_to_sign_in(alpha):
    response = Client(HTTP_HOST=alpha.host).get("/console/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    inactive = make_user(alpha.schema, "gone", superuser=True, active=False)
    browser = Client(HTTP_HOST=alpha.host)
    with schema_context(alpha.schema):
        browser.force_login(inactive)
    response = browser.get("/console/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_console_has_the_workflows_section_and_loads_nothing_from_elsewhere(alpha):
    user = make_user(alpha.schema, "wf-watcher", "agents.view_execution")
    html = client_for(user, alpha.schema, alpha.host).get("/console/").content.decode()
    for test_id in ("workflow-select", "resource-select", "resource-state", "resource-history"):
        assert f'data-testid="{test_id}"' in html, test_id
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)
