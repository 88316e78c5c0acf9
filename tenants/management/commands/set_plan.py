"""``manage.py set_plan``: create or change a plan, and put tenants on it.

    manage.py set_plan pro --name Pro --executions-per-day 10000 --cost-budget 50 \\
        --allowed-models 'gpt-4o*,claude-*' --tenant acme --tenant globex
    manage.py set_plan pro --clear cost_budget        # no budget any more
    manage.py set_plan --none --tenant acme           # acme has no plan (no limits)

Every limit is optional; one not given keeps its value (a new plan: no limit).
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django_tenants.utils import schema_context

from tenants.audit.services import platform_audit_record
from tenants.models import BudgetPeriod, Plan, Tenant

INT_LIMITS = [
    "max_agents",
    "executions_per_day",
    "tokens_per_day",
    "tokens_per_month",
    "max_concurrent_executions",
    "max_streams_per_tenant",
    "max_streams_per_key",
    "max_execution_seconds",
    "max_tokens_per_call",
    "retention_days",
    "requests_per_minute",
    "requests_per_minute_per_key",
    "executions_per_hour",
    "executions_per_hour_per_key",
]
LIST_LIMITS = ["allowed_models", "allowed_providers"]
CLEARABLE = [*INT_LIMITS, "cost_budget", *LIST_LIMITS]
OTHER_FIELDS = ["name", "budget_period", "budget_warning_percent"]
ACTOR = "command:set_plan"


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Create or change a plan and assign it to tenants."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", nargs="?", help="the plan's slug (created if new)")
        parser.add_argument("--name", help="display name (a new plan: the slug)")
        parser.add_argument(
            "--tenant", action="append", default=[], help="tenant slug to put on it (repeat)"
        )
        parser.add_argument("--none", action="store_true", help="take --tenant off any plan")
        for name in INT_LIMITS:
            parser.add_argument(f"--{name.replace('_', '-')}", type=_non_negative, dest=name)
        parser.add_argument("--cost-budget", dest="cost_budget", help="decimal, e.g. 25.50")
        parser.add_argument("--budget-period", choices=BudgetPeriod.values)
        parser.add_argument("--budget-warning-percent", type=int)
        for name in LIST_LIMITS:
            parser.add_argument(
                f"--{name.replace('_', '-')}", dest=name, help="comma-separated (empty: all)"
            )
        parser.add_argument(
            "--clear", action="append", default=[], choices=CLEARABLE, help="remove a limit"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Plans and tenants are public-schema rows (django-tenants saves a tenant only there).
        with schema_context("public"):
            self._handle(options)

    def _handle(self, options: dict[str, Any]) -> None:
        tenants = self._tenants(options["tenant"])
        if options["none"]:
            if options["slug"]:
                raise CommandError("give a plan slug or --none, not both")
            with transaction.atomic():
                for tenant in tenants:
                    previous = tenant.plan.slug if tenant.plan else None
                    tenant.plan = None
                    tenant.save(update_fields=["plan"])
                    _audit_plan_change(tenant, previous)
            self.stdout.write(f"{len(tenants)} tenant(s) on no plan")
            return
        if not options["slug"]:
            raise CommandError("a plan slug is required")
        with transaction.atomic():
            plan = Plan.objects.filter(slug=options["slug"]).first() or Plan(
                slug=options["slug"], name=options["slug"]
            )
            before = {name: getattr(plan, name) for name in (*CLEARABLE, *OTHER_FIELDS)}
            self._apply(plan, options)
            try:
                plan.full_clean()
            except ValidationError as exc:
                raise CommandError(f"invalid plan: {exc.message_dict}") from None
            created = plan.pk is None
            plan.save()
            changed = [k for k, v in before.items() if getattr(plan, k) != v]
            if created or changed:
                platform_audit_record(
                    actor=ACTOR,
                    action="plan.create" if created else "plan.change",
                    target_type="plan",
                    target_id=plan.slug,
                    details={"fields": {name: _jsonable(getattr(plan, name)) for name in changed}},
                )
            for tenant in tenants:
                previous = tenant.plan.slug if tenant.plan else None
                tenant.plan = plan
                tenant.save(update_fields=["plan"])
                if previous != plan.slug:
                    _audit_plan_change(tenant, previous)
        self.stdout.write(
            json.dumps(
                {"plan": plan.slug, "tenants": [t.slug for t in tenants]}
                | {name: _jsonable(getattr(plan, name)) for name in CLEARABLE}
            )
        )

    @staticmethod
    def _tenants(slugs: list[str]) -> list[Tenant]:
        tenants = list(Tenant.objects.filter(slug__in=slugs).select_related("plan"))
        missing = sorted(set(slugs) - {t.slug for t in tenants})
        if missing:
            raise CommandError(f"no tenant {', '.join(missing)}")
        return tenants

    @staticmethod
    def _apply(plan: Plan, options: dict[str, Any]) -> None:
        if options["name"]:
            plan.name = options["name"]
        for name in INT_LIMITS:
            if options[name] is not None:
                setattr(plan, name, options[name])
        if options["cost_budget"] is not None:
            try:
                budget = Decimal(options["cost_budget"])
            except InvalidOperation:
                raise CommandError("--cost-budget must be a decimal number") from None
            if budget < 0:
                raise CommandError("--cost-budget must not be negative")
            plan.cost_budget = budget
        for name in ("budget_period", "budget_warning_percent"):
            if options[name] is not None:
                setattr(plan, name, options[name])
        for name in LIST_LIMITS:
            if options[name] is not None:
                setattr(plan, name, [v.strip() for v in options[name].split(",") if v.strip()])
        for name in options["clear"]:
            setattr(plan, name, [] if name in LIST_LIMITS else None)


def _audit_plan_change(tenant: Tenant, previous: str | None) -> None:
    platform_audit_record(
        actor=ACTOR,
        action="tenant.plan_change",
        target_type="tenant",
        target_id=tenant.slug,
        details={"from": previous, "to": tenant.plan.slug if tenant.plan else None},
    )


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value
