"""Public-schema models: tenants, their domains and their API keys.

API keys live in the public schema on purpose: the credential decides the tenant of an API
call, so the key must be found before any tenant schema is chosen. Every query on them is
scoped by ``tenant``.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django_tenants.models import DomainMixin, TenantMixin

from tenants.audit.models import AuditEntry
from tenants.context import tenant_connection
from tenants.roles import Role
from tenants.schema_template import schema_clone, schema_exists

SLUG_PATTERN = r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$"
slug_validator = RegexValidator(
    SLUG_PATTERN, "Use 3-40 lowercase letters, digits and hyphens, starting with a letter."
)


class TenantStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"


class BudgetPeriod(models.TextChoices):
    DAY = "day", "Day (UTC)"
    MONTH = "month", "Month (UTC)"


def _limit(help_text: str) -> models.PositiveIntegerField[int | None, int | None]:
    return models.PositiveIntegerField(null=True, blank=True, help_text=help_text)


class Plan(models.Model):
    """What a tenant may do. Every limit is optional: empty means "no limit".

    Enforced in the execution core (``agents.core.limits``) and the access module, so every
    interface gets the same answer; read through ``tenants.plans.limits_for`` (cached).
    """

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    max_agents = _limit("Agents the tenant may have.")
    executions_per_day = _limit("Executions admitted per UTC day (every mode).")
    tokens_per_day = _limit("Input + output tokens per UTC day.")
    tokens_per_month = _limit("Input + output tokens per UTC month.")
    cost_budget = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Spend cap per budget period, in the currency of the model prices.",
    )
    budget_period = models.CharField(
        max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH
    )
    budget_warning_percent = models.PositiveSmallIntegerField(
        default=80, help_text="Consumption shows a warning from this share of the budget on."
    )
    max_concurrent_executions = _limit("Executions running at once (every mode).")
    max_streams_per_tenant = _limit("Open SSE / WebSocket / MCP streams of the tenant.")
    max_streams_per_key = _limit("Open streams per API key (tokens count for their key).")
    max_execution_seconds = _limit("Upper bound of any execution's timeout.")
    max_tokens_per_call = _limit("Upper bound of max_tokens of one model call.")
    retention_days = _limit("Executions are kept this many days.")
    requests_per_minute = _limit("API requests per minute, whole tenant.")
    requests_per_minute_per_key = _limit("API requests per minute, per API key.")
    executions_per_hour = _limit("Executions started per hour, whole tenant.")
    executions_per_hour_per_key = _limit("Executions started per hour, per API key.")
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        help_text='Model names or glob patterns ("gpt-4o*"); empty allows every model.',
    )
    allowed_providers = models.JSONField(
        default=list,
        blank=True,
        help_text='Provider kinds ("openai", "anthropic", ...); empty allows every provider.',
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name or self.slug

    def clean(self) -> None:
        for name in ("allowed_models", "allowed_providers"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(
                isinstance(item, str) and item.strip() for item in value
            ):
                raise ValidationError({name: 'Give a JSON list of names, e.g. ["gpt-4o*"].'})


class Tenant(TenantMixin):
    slug = models.CharField(max_length=40, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    status = models.CharField(
        max_length=16, choices=TenantStatus.choices, default=TenantStatus.ACTIVE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # No plan: no limits beyond the platform's settings.
    plan = models.ForeignKey(
        Plan, on_delete=models.PROTECT, null=True, blank=True, related_name="tenants"
    )
    # Prompts and outputs stay out of the logs unless a platform operator turns this on for a
    # tenant (debugging with the tenant's consent); ids, sizes and timings are always logged.
    log_content = models.BooleanField(
        default=False, help_text="Write prompts and model outputs into the platform's logs."
    )

    # A tenant's schema is created with the row and never dropped with it: deleting a tenant
    # row must not silently destroy its data.
    auto_create_schema = True
    auto_drop_schema = False

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    @property
    def is_active(self) -> bool:
        return self.status == TenantStatus.ACTIVE

    @staticmethod
    def schema_for_slug(slug: str) -> str:
        return "t_" + slug.replace("-", "_")

    def create_schema(
        self, check_if_exists: bool = False, sync_schema: bool = True, verbosity: int = 1
    ) -> bool | None:
        """Create the schema as a copy of the template schema (``tenants.schema_template``),
        or by migrating it when the template is missing or behind the migrations."""
        if check_if_exists and schema_exists(self.schema_name):
            return False
        if sync_schema and schema_clone(schema_name=self.schema_name):
            tenant_connection.set_schema_to_public()  # where the library's create_schema leaves it
            return True
        created: bool | None = super().create_schema(
            check_if_exists=check_if_exists, sync_schema=sync_schema, verbosity=verbosity
        )
        return created


class Domain(DomainMixin):
    class Meta:
        ordering = ["domain"]


class ApiKey(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    # The public part of the key, used to find the row; the rest is only ever stored hashed.
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.USER)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=200, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.role})"


class RateBucket(models.Model):
    """A token bucket of the PostgreSQL rate-limit back-end (``tenants.ratelimit``).

    UNLOGGED (see the migration): buckets are cheap to lose in a crash, and writing them to
    the WAL would cost every request a flush for nothing worth keeping.
    """

    key = models.CharField(max_length=200, primary_key=True)
    tokens = models.FloatField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.key


class StreamLease(models.Model):
    """One open stream (SSE, WebSocket) of a tenant on a plan that caps them
    (``agents.core.streams``). The process serving it renews ``expires_at``; a process that died
    leaves leases that expire, so a crash never locks a tenant out for good."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.BigIntegerField(db_index=True)
    holder = models.CharField(max_length=200)  # the API key (or principal) the stream is for
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.holder}"


class PlatformAuditLog(AuditEntry):
    """The platform's own audit log (public schema): tenants created, suspended or moved to
    another plan, plans changed, platform-admin writes and refused platform-admin logins.
    Hash-chained and append-only like each tenant's log (``tenants.audit.chain``); unmanaged
    for the same reason (Django's ``flush`` would TRUNCATE it); migration 0005 creates it."""

    class Meta:
        managed = False
        ordering = ["-created_at", "-id"]
        verbose_name = "platform audit entry"
        verbose_name_plural = "platform audit log"
