"""Operators (Django users of a tenant's admin) act with the API role their Django permissions
give them: superuser → admin, "Can run agents" → user, view permissions → readonly, else none.
The admin's test run follows the same rule."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import Permission as DjangoPermission
from django.test import Client
from django_tenants.utils import schema_context

from agents.models import Agent
from tenants.operators import operator_may, operator_role
from tenants.roles import Permission, Role
from tests.agents.conftest import make_agent, make_credential
from tests.agents.test_admin import PASSWORD, client_for, url


def make_user(
    schema: str,
    username: str,
    *permissions: str,
    staff: bool = True,
    superuser: bool = False,
    active: bool = True,
) -> Any:
    """A user of ``schema``'s admin holding exactly ``permissions`` ("app.codename")."""
    with schema_context(schema):
        user = get_user_model().objects.create_user(
            username,
            f"{username}@example.com",
            PASSWORD,
            is_staff=staff,
            is_superuser=superuser,
            is_active=active,
        )
        for permission in permissions:
            app_label, codename = permission.split(".")
            user.user_permissions.add(
                DjangoPermission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        # A fresh instance: Django caches permissions on the one it has asked before.
        return get_user_model().objects.get(pk=user.pk)


@pytest.fixture
def echo_agent(alpha) -> Agent:
    with schema_context(alpha.schema):
        return make_agent(make_credential(kind="echo"), alpha.schema, name="Echo helper")


ROLE_CASES = [
    ("root", (), {"superuser": True}, Role.ADMIN),
    ("runner", ("agents.run_agent",), {}, Role.USER),
    ("runner-viewer", ("agents.run_agent", "agents.view_execution"), {}, Role.USER),
    ("watcher", ("agents.view_execution",), {}, Role.READONLY),
    ("agent-viewer", ("agents.view_agent",), {}, Role.READONLY),
    ("editor", ("agents.change_agent", "agents.add_agent"), {}, None),
    ("staff-only", (), {}, None),
    ("member", ("agents.run_agent",), {"staff": False}, None),
    ("gone", (), {"superuser": True, "active": False}, None),
    ("gone-runner", ("agents.run_agent",), {"active": False}, None),
]


@pytest.mark.parametrize(("username", "permissions", "flags", "role"), ROLE_CASES)
def test_operator_role_follows_django_permissions(alpha, username, permissions, flags, role):
    user = make_user(alpha.schema, username, *permissions, **flags)
    with schema_context(alpha.schema):
        assert operator_role(user) == role
        assert operator_may(user, Permission.EXECUTIONS_RUN) is (role in (Role.ADMIN, Role.USER))


def test_anonymous_has_no_role():
    assert operator_role(AnonymousUser()) is None
    assert not operator_may(AnonymousUser(), Permission.AGENTS_READ)


def test_run_agent_permission_exists_in_every_tenant(alpha, bravo):
    for persona in (alpha, bravo):
        with schema_context(persona.schema):
            permission = DjangoPermission.objects.get(
                content_type__app_label="agents", codename="run_agent"
            )
            assert permission.name == "Can run agents"


# ---- the admin's test run ----


def browser_for(alpha, username: str, *permissions: str) -> Client:
    return client_for(make_user(alpha.schema, username, *permissions), alpha.schema, alpha.host)


def test_test_run_page_and_link_need_the_run_permission(alpha, echo_agent):
    page = url("agents_agent_test_run", echo_agent.pk)
    viewer = browser_for(alpha, "viewer", "agents.view_agent", "agents.change_agent")
    listing = viewer.get(url("agents_agent_changelist"))
    assert listing.status_code == 200 and echo_agent.slug in listing.content.decode()
    assert page not in listing.content.decode()
    assert viewer.get(page).status_code == 403

    runner = browser_for(alpha, "runner", "agents.view_agent", "agents.run_agent")
    listing = runner.get(url("agents_agent_changelist"))
    assert page in listing.content.decode()
    response = runner.get(page)
    assert response.status_code == 200
    assert url("agents_agent_test_run_stream", echo_agent.pk) in response.content.decode()


def test_superuser_still_gets_the_test_run(alpha, echo_agent):
    root = client_for(make_user(alpha.schema, "root", superuser=True), alpha.schema, alpha.host)
    page = url("agents_agent_test_run", echo_agent.pk)
    assert page in root.get(url("agents_agent_changelist")).content.decode()
    assert root.get(page).status_code == 200


def test_test_run_stream_needs_the_run_permission(alpha, echo_agent):
    viewer = browser_for(alpha, "viewer", "agents.view_agent")
    response = viewer.post(url("agents_agent_test_run_stream", echo_agent.pk), {"message": "x"})
    assert response.status_code == 403
