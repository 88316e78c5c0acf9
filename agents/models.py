"""Tenant-schema models: provider credentials, the price table, agents (with immutable versions),
executions and their stored event logs.

Writes go through ``agents.services``; these classes only describe storage.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.contrib.postgres.indexes import GinIndex
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q

from agents.engine import DEFAULT_RETRY_ON


def new_agent_id() -> str:
    return f"agent_{uuid.uuid4()}"


def default_retry_on_errors() -> list[str]:
    # The engine owns which failures are transient.
    return list(DEFAULT_RETRY_ON)


def new_execution_id() -> str:
    return f"exec_{uuid.uuid4().hex}"


class ProviderKind(models.TextChoices):
    OPENAI = "openai", "OpenAI-compatible (OpenAI, Azure, vLLM, llama.cpp, Ollama /v1, OpenRouter…)"
    ANTHROPIC = "anthropic", "Anthropic"
    GOOGLE = "google", "Google Gemini"
    OLLAMA = "ollama", "Ollama (native API)"
    ECHO = "echo", "Echo (built-in, offline)"


class ProviderCredential(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=ProviderKind.choices)
    base_url = models.CharField(max_length=500, blank=True)
    # Sealed with agents.crypto ("kid$token"); never shown after saving, never returned by an API.
    api_key_encrypted = models.TextField(blank=True, editable=False)
    extra_headers_encrypted = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_encrypted)


class McpServer(models.Model):
    """A remote MCP server an operator registered for the tenant: its tools may be tools of the
    tenant's agents (tool kind ``mcp``). The URL is SSRF-checked when saved and before every
    call; the auth header is sealed like provider keys and never shown or returned."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.SlugField(max_length=100, unique=True)
    url = models.CharField(max_length=500)
    # "Header-Name: value", sealed with agents.crypto; sent on every request to this server.
    auth_header_encrypted = models.TextField(blank=True, editable=False)
    # The remote tools agents may use (empty: none).
    allowed_tools = models.JSONField(default=list, blank=True)
    timeout_seconds = models.FloatField(default=30.0)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"

    def __str__(self) -> str:
        return self.name

    @property
    def has_auth_header(self) -> bool:
        return bool(self.auth_header_encrypted)


class McpSubscription(models.Model):
    """A 2025-11-25 MCP session's ``resources/subscribe``: kept in the database so that the
    session's notification stream (GET /mcp), on whichever server process, follows it."""

    session = models.CharField(max_length=200)
    uri = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "uri"], name="mcp_subscription_unique")
        ]

    def __str__(self) -> str:
        return self.uri


class ModelPrice(models.Model):
    """A model a tenant can use, with its price per million tokens and capability tags.

    The rows are both the price table (cost of executions) and the pool that virtual models
    (``auto``, ``cb:fastest``…) choose from: a row with a credential is a routable model.
    """

    credential = models.ForeignKey(
        ProviderCredential, null=True, blank=True, on_delete=models.CASCADE, related_name="models"
    )
    model = models.CharField(max_length=200)
    input_per_million = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    output_per_million = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    capabilities = models.JSONField(
        default=list, blank=True, help_text='Tags such as ["fast", "coding"]'
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["model"]
        constraints = [
            models.UniqueConstraint(
                fields=["credential", "model"], name="modelprice_unique_per_credential"
            ),
            models.UniqueConstraint(
                fields=["model"],
                condition=Q(credential__isnull=True),
                name="modelprice_unique_priceonly",
            ),
        ]

    def __str__(self) -> str:
        return self.model


class Agent(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_agent_id, editable=False)
    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    credential = models.ForeignKey(
        ProviderCredential, on_delete=models.PROTECT, related_name="agents"
    )
    model = models.CharField(max_length=200)
    temperature = models.FloatField(null=True, blank=True, default=0.7)
    max_tokens = models.PositiveIntegerField(null=True, blank=True, default=4000)
    top_p = models.FloatField(null=True, blank=True, default=0.9)
    frequency_penalty = models.FloatField(null=True, blank=True)
    presence_penalty = models.FloatField(null=True, blank=True)
    stop_sequences = models.JSONField(default=list, blank=True)
    system_prompt = models.TextField(blank=True)
    user_template = models.TextField(
        blank=True, help_text="{var} placeholders from the input and context"
    )
    context_instructions = models.TextField(blank=True)
    capabilities = models.JSONField(default=list, blank=True)
    tools = models.JSONField(default=list, blank=True)
    input_schema = models.JSONField(null=True, blank=True)
    output_schema = models.JSONField(null=True, blank=True)
    input_mapping = models.JSONField(default=dict, blank=True)
    output_mapping = models.JSONField(default=dict, blank=True)
    retry_max_attempts = models.PositiveSmallIntegerField(default=3)
    retry_backoff_seconds = models.FloatField(default=10.0)
    retry_on_errors = models.JSONField(default=default_retry_on_errors, blank=True)
    timeout_seconds = models.FloatField(default=300.0)
    fallback_models = models.JSONField(
        default=list,
        blank=True,
        help_text='Ordered: ["model", {"model": "m", "credential": "name"}]',
    )
    max_tool_steps = models.PositiveSmallIntegerField(default=8)
    enabled = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class AgentVersion(models.Model):
    """An immutable copy of an agent's configuration; executions pin the one they ran with."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    config = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["agent", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "version"], name="agentversion_unique")
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} v{self.version}"


class ExecutionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    TIMEOUT = "timeout", "Timeout"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = frozenset(
    {
        ExecutionStatus.COMPLETED,
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMEOUT,
        ExecutionStatus.CANCELLED,
    }
)


class Execution(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_execution_id, editable=False)
    # No index of its own: execution_agent_recent (agent, -created_at) serves lookups by agent.
    # Every index costs each insert and each non-HOT update of the hottest table.
    agent = models.ForeignKey(
        Agent, on_delete=models.PROTECT, related_name="executions", db_index=False
    )
    # The AgentVersion.version this run used (with ``agent``, it names the immutable config).
    agent_version = models.PositiveIntegerField()
    context = models.JSONField(default=dict)
    request_input = models.JSONField(default=dict)
    # Per-call options the run was asked with (timeout, retry, mappings), so a worker can run it.
    options = models.JSONField(default=dict, blank=True)
    input_data = models.JSONField(default=dict)
    output = models.JSONField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=ExecutionStatus.choices, default=ExecutionStatus.PENDING
    )
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.JSONField(default=list)
    retry_count = models.PositiveIntegerField(default=0)
    requested_model = models.CharField(max_length=200, blank=True)
    model_used = models.CharField(max_length=200, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(default=False)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal("0"))
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # Indexed in Meta (no varchar_pattern_ops twin: nothing searches it with LIKE).
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        db_index=False,
    )
    principal = models.CharField(max_length=200, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    # What admission (and each further model call) set aside against the tenant's token and
    # cost quotas while the run is active (agents.core.limits); meaningless once it ended.
    reserved_tokens = models.PositiveBigIntegerField(default=0, editable=False)
    reserved_cost = models.DecimalField(
        max_digits=14, decimal_places=8, default=Decimal("0"), editable=False
    )

    class Meta:
        ordering = ["-created_at"]
        # Operators (Django users) get API roles from these: see tenants.operators.
        permissions = [("run_agent", "Can run agents")]
        indexes = [
            models.Index(fields=["agent", "-created_at"], name="execution_agent_recent"),
            models.Index(fields=["status", "-created_at"], name="execution_status_recent"),
            models.Index(fields=["-created_at"], name="execution_recent"),
            models.Index(fields=["parent"], name="execution_parent"),
            # Context queries (by key, by several filters, by nested path) use JSON containment.
            GinIndex(
                fields=["context"], opclasses=["jsonb_path_ops"], name="execution_context_gin"
            ),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class UsagePeriod(models.TextChoices):
    DAY = "day", "Day"
    MONTH = "month", "Month"


class UsageCounter(models.Model):
    """What a tenant's ended executions consumed in one UTC day or month, kept in step with
    the executions (written in the transaction that stores each end): what quotas and budgets
    are checked against without summing a month of executions per request."""

    period = models.CharField(max_length=8, choices=UsagePeriod.choices)
    starts_on = models.DateField()
    executions = models.PositiveBigIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=8, default=Decimal("0"))

    class Meta:
        ordering = ["-starts_on", "period"]
        constraints = [
            models.UniqueConstraint(fields=["period", "starts_on"], name="usage_counter_period")
        ]

    def __str__(self) -> str:
        return f"{self.period} {self.starts_on}"


class ExecutionEvent(models.Model):
    """One entry of an execution's event log, numbered from 1 without gaps. Consecutive chunks
    are coalesced into one row, so a long answer does not cost a row per token."""

    # No index of its own: the unique (execution, seq) serves every lookup by execution.
    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=32)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["execution", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "seq"], name="executionevent_unique_seq")
        ]

    def __str__(self) -> str:
        return f"{self.execution_id}#{self.seq} {self.type}"


class IdempotencyState(models.TextChoices):
    PENDING = "pending", "Pending"
    COMPLETED = "completed", "Completed"


class IdempotencyRecord(models.Model):
    """The first response to a request made with an ``Idempotency-Key`` (tenant schema).

    Keys are scoped to the principal that sent them (the schema already scopes them to the
    tenant): two API keys of one tenant never see each other's responses. The unique
    (scope, key) row is inserted *before* the work starts, so concurrent repeats find it and
    never start a second execution.
    """

    scope = models.CharField(max_length=200)
    key = models.CharField(max_length=255)
    # sha256 of method, path, canonical JSON body and scope: the same key with another body is
    # refused instead of answered with the first body's result.
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    state = models.CharField(
        max_length=16, choices=IdempotencyState.choices, default=IdempotencyState.PENDING
    )
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    response_headers = models.JSONField(default=dict, blank=True)
    execution_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # A pending record whose owner vanished (process killed) may be taken over after this.
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotency_unique_key")
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"
