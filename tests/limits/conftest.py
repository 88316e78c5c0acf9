"""Plans on the test personas' tenants, and clean rate-limit buckets for every test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django_tenants.utils import schema_context

from agents.models import ModelPrice
from tenants.models import Plan, Tenant
from tenants.plans import announce_plan_change, forget_limits
from tests.api.conftest import make_llm_agent  # noqa: F401  (a fixture these tests share)
from tests.conftest import Persona


def redis_reachable() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def flush_redis_buckets() -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL or "redis://127.0.0.1:6379/0")
    keys = list(client.scan_iter("cba:rl:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _fresh_limits() -> Iterator[None]:
    forget_limits()
    yield
    forget_limits()


PlanOn = Callable[..., Plan]


def put_on_plan(persona: Persona, **limits: Any) -> Plan:
    """A new plan with ``limits``, the persona's tenant on it (in the caller's transaction)."""
    with schema_context("public"):
        plan = Plan.objects.create(
            slug=f"p-{persona.slug}-{Plan.objects.count()}", name="Test", **limits
        )
        Tenant.objects.filter(pk=persona.tenant.pk).update(plan=plan)
        announce_plan_change()  # an update() sends no signal; live servers must hear of it
    return plan


@pytest.fixture
def plan_on(django_db_blocker: Any) -> Iterator[PlanOn]:
    """``plan_on(persona, executions_per_day=2, ...)``; plans and assignments are undone after
    the test even when it committed (live-server tests)."""
    made: list[tuple[Persona, Plan]] = []

    def make(persona: Persona, **limits: Any) -> Plan:
        plan = put_on_plan(persona, **limits)
        made.append((persona, plan))
        return plan

    yield make
    with django_db_blocker.unblock(), schema_context("public"):
        for persona, plan in made:
            Tenant.objects.filter(pk=persona.tenant.pk).update(plan=None)
            Plan.objects.filter(pk=plan.pk).delete()
    forget_limits()


def price(schema: str, model: str, *, input_pm: str = "0", output_pm: str) -> ModelPrice:
    with schema_context(schema):
        return ModelPrice.objects.create(
            model=model, input_per_million=Decimal(input_pm), output_per_million=Decimal(output_pm)
        )
