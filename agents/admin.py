"""The tenant admin for agents: provider credentials (secrets write-only), the price table,
agents (every save a new version; a test run that streams the answer) and executions
(read-only, with their event timeline)."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from agents.admin_test_run import test_run_events, test_run_stream
from agents.models import (
    Agent,
    AgentVersion,
    Execution,
    ExecutionEvent,
    McpServer,
    ModelPrice,
    ProviderCredential,
)
from agents.services.agents import CONFIG_FIELDS, agent_create, agent_update
from agents.services.credentials import credential_save
from agents.services.mcp_servers import mcp_server_check, mcp_server_create, mcp_server_update
from agents.services.tool_secrets import mask_tool_secrets, seal_tool_secrets
from agents.usage import usage, usage_period_or_default
from agents.usage_charts import (
    cost_per_day_chart,
    executions_per_day_chart,
    tokens_by_model_chart,
)
from config.admin_sites import tenant_admin_site
from config.errors import DomainError
from tenants.middleware import request_tenant
from tenants.operators import operator_may
from tenants.roles import Permission


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


def _schema(request: HttpRequest) -> str:
    return request_tenant(request).schema_name


def _may_run(request: HttpRequest) -> bool:
    # The same rule as every run made for an operator (console, test run): tenants.operators.
    return operator_may(request.user, Permission.EXECUTIONS_RUN)


# ---- provider credentials ----


class CredentialForm(forms.ModelForm):
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave empty to keep the stored key.",
    )
    extra_headers = forms.JSONField(
        required=False,
        help_text='Write-only, e.g. {"OpenAI-Organization": "org-…"}. Empty keeps the stored ones.',
    )

    class Meta:
        model = ProviderCredential
        fields = ["name", "kind", "base_url"]


@admin.register(ProviderCredential, site=tenant_admin_site)
class ProviderCredentialAdmin(admin.ModelAdmin):
    form = CredentialForm
    list_display = ("name", "kind", "base_url", "key_stored", "updated_at")
    fields = ("name", "kind", "base_url", "api_key", "extra_headers")

    @admin.display(boolean=True, description="key stored")
    def key_stored(self, obj: ProviderCredential) -> bool:
        return obj.has_api_key

    def save_model(
        self, request: HttpRequest, obj: ProviderCredential, form: Any, change: bool
    ) -> None:
        data = form.cleaned_data
        # Save into ``obj`` itself (new or not): the admin then logs, links and redirects to
        # ``obj.pk``, which must be the stored row.
        credential_save(
            credential=obj,
            name=data["name"],
            kind=data["kind"],
            base_url=data.get("base_url") or "",
            api_key=data.get("api_key") or None,
            extra_headers=data.get("extra_headers") or None,
        )

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form_class = super().get_form(request, obj, change=change, **kwargs)

        # ignore: built on the form class the admin makes at run time; mypy takes no
        # variable as a base class.
        class Validated(form_class):  # type: ignore[misc, valid-type]
            def clean(self) -> dict[str, Any]:
                data: dict[str, Any] = super().clean()
                from agents.services.credentials import credential_secrets_stay, validate_base_url

                if data.get("kind") and data.get("kind") != "echo" and data.get("base_url"):
                    try:
                        validate_base_url(data["base_url"].strip())
                    except DomainError as exc:
                        raise ValidationError({"base_url": exc.message}) from None
                if self.instance.pk is not None:
                    try:
                        credential_secrets_stay(
                            self.instance.pk,
                            (data.get("base_url") or "").strip().rstrip("/"),
                            data.get("api_key") or None,
                            data.get("extra_headers") or None,
                        )
                    except DomainError as exc:
                        field = exc.message.partition(":")[0]
                        raise ValidationError({field: exc.message}) from None
                return data

        return Validated


# ---- remote MCP servers ----


class McpServerForm(forms.ModelForm):
    auth_header = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only, 'Name: value' (e.g. 'Authorization: Bearer …'). Empty keeps it.",
    )
    remove_auth_header = forms.BooleanField(required=False)

    class Meta:
        model = McpServer
        fields = ["name", "url", "allowed_tools", "timeout_seconds", "enabled"]

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        try:
            mcp_server_check(_mcp_changes(data), partial=True)
        except DomainError as exc:
            field = exc.message.partition(":")[0]
            raise ValidationError({field if field in self.fields else "url": exc.message}) from None
        return data


def _mcp_changes(data: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {
        key: data[key]
        for key in ("name", "url", "allowed_tools", "timeout_seconds", "enabled")
        if key in data and data[key] is not None
    }
    if data.get("remove_auth_header"):
        changes["auth_header"] = ""
    elif data.get("auth_header"):
        changes["auth_header"] = data["auth_header"]
    return changes


@admin.register(McpServer, site=tenant_admin_site)
class McpServerAdmin(admin.ModelAdmin):
    form = McpServerForm
    list_display = ("name", "url", "enabled", "header_stored", "updated_at")
    fields = (
        "name",
        "url",
        "auth_header",
        "remove_auth_header",
        "allowed_tools",
        "timeout_seconds",
        "enabled",
    )

    @admin.display(boolean=True, description="auth header stored")
    def header_stored(self, obj: McpServer) -> bool:
        return obj.has_auth_header

    def save_model(self, request: HttpRequest, obj: McpServer, form: Any, change: bool) -> None:
        changes = _mcp_changes(form.cleaned_data)
        if change:
            mcp_server_update(
                server=obj, changes=changes, actor=_actor(request), schema_name=_schema(request)
            )
        else:
            created = mcp_server_create(
                data=changes, actor=_actor(request), schema_name=_schema(request)
            )
            obj.pk = created.pk  # the admin logs and redirects to the stored row


class ModelPriceForm(forms.ModelForm):
    """Every execution of the tenant reads these rows: a bad one must be refused here, not break
    the runs (``capabilities`` must be a list of tags; prices cannot be negative)."""

    class Meta:
        model = ModelPrice
        fields = [
            "credential",
            "model",
            "input_per_million",
            "output_per_million",
            "capabilities",
            "enabled",
        ]

    def clean_capabilities(self) -> list[str]:
        value = self.cleaned_data.get("capabilities")
        if value is None:  # an emptied field means no tags
            return []
        if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
            raise ValidationError('Must be a list of tags, e.g. ["fast", "coding"].')
        return value

    def _price(self, field: str) -> Any:
        value = self.cleaned_data.get(field)
        if value is not None and value < 0:
            raise ValidationError("Must not be negative.")
        return value

    def clean_input_per_million(self) -> Any:
        return self._price("input_per_million")

    def clean_output_per_million(self) -> Any:
        return self._price("output_per_million")


@admin.register(ModelPrice, site=tenant_admin_site)
class ModelPriceAdmin(admin.ModelAdmin):
    form = ModelPriceForm
    list_display = (
        "model",
        "credential",
        "input_per_million",
        "output_per_million",
        "capabilities",
        "enabled",
    )
    list_filter = ("enabled", "credential")
    list_editable = ("input_per_million", "output_per_million", "enabled")

    def get_changelist_form(self, request: HttpRequest, **kwargs: Any) -> Any:
        return super().get_changelist_form(request, form=ModelPriceForm, **kwargs)


# ---- agents ----


class AgentForm(forms.ModelForm):
    class Meta:
        model = Agent
        fields = ["credential", *CONFIG_FIELDS]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Tool header secrets are write-only: the page shows the mask, and the mask sent back
        # keeps the stored value (agents.services.tool_secrets).
        if "tools" in self.initial:
            self.initial["tools"] = mask_tool_secrets(self.initial["tools"])


class AgentVersionInline(admin.TabularInline):
    model = AgentVersion
    extra = 0
    fields = ("version", "created_at", "created_by")
    readonly_fields = fields
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Agent, site=tenant_admin_site)
class AgentAdmin(admin.ModelAdmin):
    form = AgentForm
    list_display = ("slug", "name", "model", "credential", "version", "enabled", "test_run_link")
    list_filter = ("enabled", "credential")
    search_fields = ("slug", "name", "description")
    readonly_fields = ("id", "version")
    inlines = [AgentVersionInline]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # executions pin agents; disable an agent instead

    def get_list_display(self, request: HttpRequest) -> Any:
        display = super().get_list_display(request)
        if _may_run(request):
            return display
        return tuple(name for name in display if name != "test_run_link")

    @admin.display(description="test")
    def test_run_link(self, obj: Agent) -> str:
        url = reverse("tenant_admin:agents_agent_test_run", args=[obj.pk])
        return format_html('<a href="{}">test run</a>', url)

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        data = {
            field: form.cleaned_data.get(field)
            for field in ("credential", *CONFIG_FIELDS)
            if field in form.cleaned_data
        }
        try:
            if change:
                saved = agent_update(
                    agent=obj, changes=data, actor=_actor(request), schema_name=_schema(request)
                )
            else:
                saved = agent_create(data=data, actor=_actor(request), schema_name=_schema(request))
        except DomainError as exc:
            messages.error(request, exc.message)
            raise
        obj.pk, obj.version = saved.pk, saved.version

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form_class = super().get_form(request, obj, change=change, **kwargs)

        # ignore: built on the form class the admin makes at run time; mypy takes no
        # variable as a base class.
        class Validated(form_class):  # type: ignore[misc, valid-type]
            def clean(self) -> dict[str, Any]:
                data: dict[str, Any] = super().clean()
                from agents.services.agents import WRITABLE_FIELDS, agent_config_check

                config = {k: v for k, v in data.items() if k in WRITABLE_FIELDS}
                try:
                    # Errors in tool secrets (a mask with nothing stored, a kept secret on a
                    # tool moved to another host) belong on the form, not in a failed save.
                    if "tools" in data:
                        seal_tool_secrets(data["tools"], stored=self.instance.tools or [])
                    agent_config_check(config)
                except DomainError as exc:
                    field = exc.message.partition(":")[0].split("[")[0].split(".")[0]
                    if field in self.fields:
                        raise ValidationError({field: exc.message}) from None
                    raise ValidationError(exc.message) from None
                return data

        return Validated

    def get_urls(self) -> list[URLPattern]:
        custom = [
            path(
                "<path:object_id>/test-run/",
                self.admin_site.admin_view(self.test_run_view),
                name="agents_agent_test_run",
            ),
            # Async and streaming: checks staff access itself (admin_view wraps sync views only).
            path(
                "<path:object_id>/test-run/stream/",
                test_run_stream,
                name="agents_agent_test_run_stream",
            ),
            path(
                "<path:object_id>/test-run/<str:execution_id>/events/",
                test_run_events,
                name="agents_agent_test_run_events",
            ),
        ]
        return custom + super().get_urls()

    def test_run_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not _may_run(request):
            raise PermissionDenied  # the page only leads to a run the stream would refuse
        agent = get_object_or_404(Agent, pk=object_id)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Test run: {agent.name}",
            "agent": agent,
            "opts": self.model._meta,
            "stream_url": reverse("tenant_admin:agents_agent_test_run_stream", args=[agent.pk]),
        }
        return TemplateResponse(request, "admin/agents/agent/test_run.html", context)


# ---- executions (read-only audit of every run) ----


class ExecutionEventInline(admin.TabularInline):
    model = ExecutionEvent
    extra = 0
    fields = ("seq", "type", "payload", "created_at")
    readonly_fields = fields
    can_delete = False
    ordering = ("seq",)

    @admin.display(description="data")
    def payload(self, obj: ExecutionEvent) -> str:
        return json.dumps(obj.data, ensure_ascii=False)[:2000]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Execution, site=tenant_admin_site)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "agent",
        "status",
        "model_used",
        "input_tokens",
        "output_tokens",
        "cost",
        "duration_ms",
        "created_at",
    )
    list_filter = ("status", "agent")
    search_fields = ("id", "request_id", "principal")
    date_hierarchy = "created_at"
    inlines = [ExecutionEventInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Execution._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Execution]:
        return super().get_queryset(request).select_related("agent")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.method in ("GET", "HEAD")  # view only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        usage_page = path(
            "usage/",
            self.admin_site.admin_view(self.usage_view),
            name="agents_execution_usage",
        )
        return [usage_page, *super().get_urls()]

    def usage_view(self, request: HttpRequest) -> HttpResponse:
        """The tenant's usage over a period (``from``/``to``, default the last 30 days):
        charts drawn server-side (agents.usage_charts) and the figures by agent and model.
        For staff who may view executions (admin_view has checked staff)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        period, error = usage_period_or_default(
            start=request.GET.get("from") or None, end=request.GET.get("to") or None
        )
        since, until = period.since, period.until
        by_day = usage(group_by=("day", "status"), since=since, until=until)
        by_model = usage(group_by=("model",), since=since, until=until)
        by_agent = usage(group_by=("agent",), since=since, until=until)
        context = {
            **self.admin_site.each_context(request),
            "title": "Usage",
            "opts": self.model._meta,
            "period": period,
            "error": error,
            "totals": by_day.totals,
            "charts": [
                executions_per_day_chart(by_day, period.days),
                cost_per_day_chart(by_day, period.days),
                tokens_by_model_chart(by_model),
            ],
            "by_agent": by_agent.rows,
            "by_model": sorted(by_model.rows, key=lambda r: -r.figures.total_tokens),
        }
        return TemplateResponse(request, "admin/usage/tenant.html", context)
