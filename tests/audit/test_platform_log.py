"""The platform log: tenants created, suspended and moved between plans, by the platform admin
and by commands; refused platform-admin logins; chained and read-only like a tenant's log."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django_tenants.utils import schema_context

from tenants.models import PlatformAuditLog, Tenant
from tests.agents.test_admin import client_for, read_form
from tests.audit.conftest import run_command

PASSWORD = "pw-platform-12345"


def entries_after(last_id: int, **filters: object) -> list[PlatformAuditLog]:
    with schema_context("public"):
        return list(PlatformAuditLog.objects.filter(id__gt=last_id, **filters).order_by("id"))


def last_id() -> int:
    with schema_context("public"):
        last = PlatformAuditLog.objects.order_by("-id").first()
    return last.pk if last else 0


@pytest.fixture
def platform(personas, db) -> Client:
    with schema_context("public"):
        root = get_user_model().objects.create_superuser("platform", "p@example.com", PASSWORD)
    return client_for(root, "public", "localhost")


def test_create_tenant_and_set_plan_commands_are_in_the_platform_log(db):
    mark = last_id()
    call_command(
        "create_tenant",
        "--slug",
        "audited-co",
        "--name",
        "Audited",
        "--domain",
        "audited-co.localhost",
        "--json",
        stdout=io.StringIO(),
    )
    call_command(
        "set_plan",
        "gold",
        "--executions-per-day",
        "10",
        "--tenant",
        "audited-co",
        stdout=io.StringIO(),
    )
    call_command("set_plan", "gold", "--executions-per-day", "20", stdout=io.StringIO())
    call_command("set_plan", "--none", "--tenant", "audited-co", stdout=io.StringIO())
    entries = [(e.actor, e.action, e.target_id, e.details) for e in entries_after(mark)]
    assert entries[0][:3] == ("command:create_tenant", "tenant.create", "audited-co")
    assert entries[0][3]["domain"] == "audited-co.localhost"
    assert entries[1][:3] == ("command:set_plan", "plan.create", "gold")
    assert entries[2][1:] == ("tenant.plan_change", "audited-co", {"from": None, "to": "gold"})
    assert entries[3][1:] == ("plan.change", "gold", {"fields": {"executions_per_day": 20}})
    assert entries[4][1:] == ("tenant.plan_change", "audited-co", {"from": "gold", "to": None})
    assert len(entries) == 5
    assert run_command("audit_verify", "--platform").status == 0


def test_suspend_and_plan_change_in_the_platform_admin_are_in_the_platform_log(platform, alpha):
    mark = last_id()
    response = platform.post(
        "/admin/tenants/tenant/",
        {"action": "suspend", "_selected_action": [str(alpha.tenant.pk)]},
    )
    assert response.status_code == 302
    call_command("set_plan", "silver", stdout=io.StringIO())
    page = platform.get(f"/admin/tenants/tenant/{alpha.tenant.pk}/change/")
    form = read_form(page, "tenant_form")
    with schema_context("public"):
        from tenants.models import Plan

        form["plan"] = str(Plan.objects.get(slug="silver").pk)
    form["status"] = "active"
    changed = platform.post(f"/admin/tenants/tenant/{alpha.tenant.pk}/change/", form)
    assert changed.status_code == 302, changed.content.decode()[:2000]
    actions = [
        (e.actor, e.action, e.details)
        for e in entries_after(mark, target_type="tenant", target_id=alpha.slug)
    ]
    assert ("user:platform", "tenant.suspend", {"from": "active", "to": "suspended"}) in actions
    assert ("user:platform", "tenant.activate", {"from": "suspended", "to": "active"}) in actions
    assert ("user:platform", "tenant.plan_change", {"from": None, "to": "silver"}) in actions
    with schema_context("public"):
        assert Tenant.objects.get(pk=alpha.tenant.pk).status == "active"


def test_a_refused_platform_admin_login_is_in_the_platform_log(platform):
    mark = last_id()
    browser = Client(HTTP_HOST="localhost", REMOTE_ADDR="198.51.100.4")
    refused = browser.post(
        "/admin/login/", {"username": "platform", "password": "wrong", "next": "/admin/"}
    )
    assert refused.status_code == 200  # the form again, with its error
    (entry,) = entries_after(mark, action="auth.failure")
    assert entry.outcome == "failure" and entry.details["username"] == "platform"
    assert entry.ip_address == "198.51.100.4"
    assert "wrong" not in str(entry.details)  # the password is never stored
    accepted = browser.post(
        "/admin/login/", {"username": "platform", "password": PASSWORD, "next": "/admin/"}
    )
    assert accepted.status_code == 302
    assert [e.actor for e in entries_after(entry.pk, action="admin.login")] == ["user:platform"]


def test_the_platform_log_is_read_only_in_the_admin_and_in_the_database(platform):
    call_command("set_plan", "bronze", stdout=io.StringIO())
    entry = entries_after(0, action="plan.create", target_id="bronze")[-1]
    listing = platform.get("/admin/tenants/platformauditlog/")
    assert listing.status_code == 200 and b"plan.create" in listing.content
    assert platform.get("/admin/tenants/platformauditlog/add/").status_code == 403
    detail = platform.get(f"/admin/tenants/platformauditlog/{entry.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert platform.post(f"/admin/tenants/platformauditlog/{entry.pk}/delete/").status_code == 403
    for statement in ("TRUNCATE {t}", "DELETE FROM {t}", "UPDATE {t} SET actor = 'x'"):
        with pytest.raises(DatabaseError, match="append-only"):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(statement.format(t="public.tenants_platformauditlog"))


def test_tampering_with_the_platform_log_is_detected(db):
    call_command("set_plan", "tampered", stdout=io.StringIO())
    entry = entries_after(0, action="plan.create", target_id="tampered")[-1]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            "UPDATE public.tenants_platformauditlog SET details = '{}' WHERE id = %s", [entry.pk]
        )
        cursor.execute("SET LOCAL session_replication_role = origin")
    result = run_command("audit_verify", "--platform")
    assert result.status == 1 and f"BROKEN  platform: entry {entry.pk}" in result.out
