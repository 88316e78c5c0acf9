from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from config.admin_sites import public_admin_site, tenant_admin_site
from config.errors import DomainError
from tenants.middleware import request_tenant
from tenants.models import ApiKey, Domain, Plan, Tenant, TenantStatus
from tenants.services import (
    api_key_create,
    api_key_revoke,
    tenant_audit_change,
    tenant_create,
    tenant_set_status,
)


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


# ---- platform admin (public schema) ----


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


class TenantAddForm(forms.ModelForm):
    domain = forms.CharField(
        help_text="Host name the tenant's admin and console answer on, e.g. acme.example.com"
    )

    class Meta:
        model = Tenant
        fields = ["slug", "name"]


@admin.register(Plan, site=public_admin_site)
class PlanAdmin(admin.ModelAdmin):
    """Plans are platform-wide: only the platform admin edits them; tenants read theirs
    (``GET /plan``). A plan in use cannot be deleted (PROTECT)."""

    list_display = (
        "slug",
        "name",
        "executions_per_day",
        "tokens_per_month",
        "cost_budget",
        "budget_period",
        "max_concurrent_executions",
        "requests_per_minute",
        "updated_at",
    )
    search_fields = ("slug", "name")
    fieldsets = [
        (None, {"fields": ["slug", "name"]}),
        (
            "Quotas",
            {
                "fields": [
                    "max_agents",
                    "executions_per_day",
                    "tokens_per_day",
                    "tokens_per_month",
                    "cost_budget",
                    "budget_period",
                    "budget_warning_percent",
                ]
            },
        ),
        (
            "Concurrency and rates",
            {
                "fields": [
                    "max_concurrent_executions",
                    "max_streams_per_tenant",
                    "max_streams_per_key",
                    "requests_per_minute",
                    "requests_per_minute_per_key",
                    "executions_per_hour",
                    "executions_per_hour_per_key",
                ]
            },
        ),
        (
            "Per call",
            {
                "fields": [
                    "max_execution_seconds",
                    "max_tokens_per_call",
                    "allowed_models",
                    "allowed_providers",
                    "retention_days",
                ]
            },
        ),
    ]


@admin.register(Tenant, site=public_admin_site)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "status", "plan", "schema_name", "created_at")
    list_filter = ("status", "plan")
    search_fields = ("slug", "name")
    actions = ["suspend", "activate"]
    inlines = [DomainInline]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = TenantAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("slug", "schema_name", "created_at") if obj else ()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return (
            ["slug", "name", "domain"]
            if obj is None
            else ["slug", "name", "status", "plan", "log_content", "schema_name", "created_at"]
        )

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj else []

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name", "status", "plan", "log_content"])
            tenant_audit_change(
                tenant=obj,
                changed=form.changed_data,
                before=form.initial,
                actor=_actor(request),
                request=request,
            )
            return
        try:
            created = tenant_create(
                slug=obj.slug,
                name=obj.name,
                domain=form.cleaned_data["domain"],
                actor=_actor(request),
                request=request,
            )
        except DomainError as exc:
            # The admin has already validated the form; a race or conflict still ends here.
            messages.error(request, exc.message)
            raise
        obj.pk, obj.schema_name = created.tenant.pk, created.tenant.schema_name
        messages.warning(
            request,
            f"Shown once. Tenant operator: {created.admin_username} / {created.admin_password} "
            f"at http://{created.domain.domain}/admin/ — first admin API key: {created.api_key}",
        )

    @admin.action(description="Suspend selected tenants")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            tenant_set_status(
                tenant=tenant,
                status=TenantStatus.SUSPENDED,
                actor=_actor(request),
                request=request,
            )

    @admin.action(description="Activate selected tenants")
    def activate(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            tenant_set_status(
                tenant=tenant, status=TenantStatus.ACTIVE, actor=_actor(request), request=request
            )


# ---- tenant admin (the request's tenant only) ----


class ApiKeyAddForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name", "role", "expires_at"]


@admin.register(ApiKey, site=tenant_admin_site)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "prefix",
        "name",
        "role",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    list_filter = ("role",)
    readonly_fields = ("prefix", "created_at", "created_by", "revoked_at", "last_used_at")
    actions = ["revoke"]
    form = ApiKeyAddForm

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiKey]:
        # The table is shared (public schema): scope every read to the request's tenant.
        return super().get_queryset(request).filter(tenant=request_tenant(request))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # keys are revoked, never deleted: the audit trail refers to them

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        created = api_key_create(
            tenant=request_tenant(request),
            role=obj.role,
            name=obj.name,
            expires_at=obj.expires_at,
            actor=_actor(request),
            request=request,
        )
        obj.pk = created.api_key.pk
        messages.warning(request, f"Copy this key now, it is not shown again: {created.key}")

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset.select_related("tenant"):
            api_key_revoke(api_key=api_key, actor=_actor(request), request=request)
