"""A tenant's plan as the rest of the platform reads it: :class:`Limits`, cached per process.

The access module gets the plan with the credential's tenant row (one query for both, see
``tenants.authentication``); code that only knows a schema (the execution core, workers, the
workflow bridge) calls :func:`limits_for`, which reads the database at most once per
``PLAN_CACHE_SECONDS`` per tenant and process. A change to a plan or to a tenant's plan clears
this process's cache at once and NOTIFYs ``plan_changes``, which clears every other process's
(``agents.core.hub`` listens); the time-to-live only bounds how stale a process that missed
the notification can be.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection

from tenants.key_cache import forget_credentials
from tenants.models import BudgetPeriod, Plan, Tenant

PLAN_CHANGES_CHANNEL = "plan_changes"


@dataclass(frozen=True)
class Limits:
    """Every limit of a plan; None means "no limit"."""

    plan: str = ""
    max_agents: int | None = None
    executions_per_day: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None
    cost_budget: Decimal | None = None
    budget_period: str = BudgetPeriod.MONTH
    budget_warning_percent: int = 80
    max_concurrent_executions: int | None = None
    max_streams_per_tenant: int | None = None
    max_streams_per_key: int | None = None
    max_execution_seconds: int | None = None
    max_tokens_per_call: int | None = None
    retention_days: int | None = None
    requests_per_minute: int | None = None
    requests_per_minute_per_key: int | None = None
    executions_per_hour: int | None = None
    executions_per_hour_per_key: int | None = None
    allowed_models: tuple[str, ...] = field(default_factory=tuple)
    allowed_providers: tuple[str, ...] = field(default_factory=tuple)
    # The tenant's own switch (Tenant.log_content), cached here with its plan so that the
    # execution core learns it without a query: prompts and outputs reach the logs only if on.
    log_content: bool = False

    @property
    def meters_usage(self) -> bool:
        """True when admission must count tokens, cost or executions against a quota."""
        return (
            self.executions_per_day is not None
            or self.tokens_per_day is not None
            or self.tokens_per_month is not None
            or self.cost_budget is not None
        )

    def model_allowed(self, model: str) -> bool:
        return not self.allowed_models or any(
            fnmatch.fnmatchcase(model, pattern) for pattern in self.allowed_models
        )

    def provider_allowed(self, kind: str) -> bool:
        return not self.allowed_providers or kind in self.allowed_providers

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "log_content":
                continue  # the tenant's setting, not part of its plan
            value = getattr(self, f.name)
            if isinstance(value, Decimal):
                value = format(value.normalize(), "f")
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


NO_LIMITS = Limits()
_LIMIT_FIELDS = [f.name for f in fields(Limits) if f.name not in ("plan", "log_content")]


def limits_of_plan(plan: Plan | None) -> Limits:
    if plan is None:
        return NO_LIMITS
    values: dict[str, Any] = {name: getattr(plan, name) for name in _LIMIT_FIELDS}
    values["allowed_models"] = tuple(str(m) for m in plan.allowed_models or ())
    values["allowed_providers"] = tuple(str(p) for p in plan.allowed_providers or ())
    return Limits(plan=plan.slug, **values)


def limits_of(tenant: Tenant) -> Limits:
    """The limits of a tenant row fetched with its plan (``select_related("plan")``)."""
    limits = limits_of_plan(tenant.plan)
    return replace(limits, log_content=True) if tenant.log_content else limits


_cache: dict[str, tuple[Limits, float]] = {}
_lock = threading.Lock()


def limits_for(schema_name: str) -> Limits:
    """The limits of the tenant of ``schema_name`` (sync; any search_path: the tenant table is
    only in the public schema)."""
    now = time.monotonic()
    hit = _cache.get(schema_name)
    if hit is not None and now - hit[1] < settings.PLAN_CACHE_SECONDS:
        return hit[0]
    tenant = Tenant.objects.select_related("plan").filter(schema_name=schema_name).first()
    limits = limits_of(tenant) if tenant is not None else NO_LIMITS
    with _lock:
        _cache[schema_name] = (limits, now)
    return limits


def cached_limits(schema_name: str) -> Limits | None:
    """The limits of ``schema_name`` if this process holds a fresh copy, else None (no query:
    for async callers that would rather not hop to a thread for a cache hit)."""
    hit = _cache.get(schema_name)
    if hit is not None and time.monotonic() - hit[1] < settings.PLAN_CACHE_SECONDS:
        return hit[0]
    return None


def forget_limits(schema_name: str | None = None) -> None:
    """Drop cached limits (of one tenant, or all): the next read goes to the database."""
    with _lock:
        if schema_name is None:
            _cache.clear()
        else:
            _cache.pop(schema_name, None)


def announce_plan_change() -> None:
    """Clear this process's cache now and every other's at COMMIT (``plan_changes``)."""
    forget_limits()
    forget_credentials()  # cached API key rows carry their tenant and its plan
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [PLAN_CHANGES_CHANNEL, "*:plans:0"])
