"""Plans in the platform admin: operators create them and put tenants on them; the change
takes effect at once in this process."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django_tenants.utils import schema_context

from tenants.models import Plan, Tenant
from tenants.plans import limits_for
from tests.agents.test_admin import client_for, read_form


@pytest.fixture
def platform(personas, db) -> Client:
    with schema_context("public"):
        root = get_user_model().objects.create_superuser("platform", "p@example.com", "pw-12345")
    return client_for(root, "public", "localhost")


def test_platform_operator_creates_a_plan_and_puts_a_tenant_on_it(platform, alpha):
    assert limits_for(alpha.schema).executions_per_day is None
    created = platform.post(
        "/admin/tenants/plan/add/",
        {
            "slug": "starter",
            "name": "Starter",
            "executions_per_day": "3",
            "cost_budget": "12.5",
            "budget_period": "month",
            "budget_warning_percent": "80",
            "allowed_models": '["fake-*"]',
            "allowed_providers": "[]",
        },
    )
    assert created.status_code == 302, created.content.decode()[:2000]
    plan = Plan.objects.get(slug="starter")
    assert plan.cost_budget == Decimal("12.5") and plan.allowed_models == ["fake-*"]
    page = platform.get(f"/admin/tenants/tenant/{alpha.tenant.pk}/change/")
    assert page.status_code == 200 and b'name="plan"' in page.content
    form = read_form(page, "tenant_form")
    form["plan"] = str(plan.pk)
    changed = platform.post(f"/admin/tenants/tenant/{alpha.tenant.pk}/change/", form)
    assert changed.status_code == 302, changed.content.decode()[:2000]
    assert Tenant.objects.get(pk=alpha.tenant.pk).plan_id == plan.pk
    # No waiting for a cache: the save cleared this process's copy.
    assert limits_for(alpha.schema).executions_per_day == 3


def test_a_plan_with_a_bad_model_list_is_refused(platform):
    refused = platform.post(
        "/admin/tenants/plan/add/",
        {
            "slug": "broken",
            "name": "Broken",
            "budget_period": "month",
            "budget_warning_percent": "80",
            "allowed_models": '"gpt-4o"',
            "allowed_providers": "[]",
        },
    )
    assert refused.status_code == 200 and b"JSON list of names" in refused.content
    assert not Plan.objects.filter(slug="broken").exists()
