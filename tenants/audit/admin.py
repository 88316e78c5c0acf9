from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from config.admin_sites import public_admin_site, tenant_admin_site
from tenants.audit.models import AuditLog
from tenants.models import PlatformAuditLog

# What an actor is, by the prefix of its name (tenants.principals.Principal.audit_actor and the
# platform's own writers): a bounded list, however many keys, tokens and users there are.
ACTOR_KINDS = [
    ("api_key", "API keys"),
    ("token", "Tokens"),
    ("user", "Users"),
    ("workflow", "Workflows"),
    ("command", "Commands"),
    ("system", "The platform"),
    ("anonymous", "Anonymous"),
]


class ActorKindFilter(admin.SimpleListFilter):
    title = "actor"
    parameter_name = "actor_kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return ACTOR_KINDS

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        kind = self.value()
        if kind is None:
            return queryset
        if kind in {"system", "anonymous"}:
            return queryset.filter(actor=kind)
        return queryset.filter(actor__startswith=f"{kind}:")


class ActionFamilyFilter(admin.SimpleListFilter):
    """``execution.*``, ``api_key.*``, …: the part of the action before its first dot."""

    title = "action"
    parameter_name = "action_family"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        actions = model_admin.get_queryset(request).values_list("action", flat=True).distinct()
        families = sorted({action.partition(".")[0] for action in actions})
        return [(family, f"{family}.*") for family in families]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        family = self.value()
        if family is None:
            return queryset
        return queryset.filter(action__startswith=f"{family}.")


@admin.register(AuditLog, site=tenant_admin_site)
@admin.register(PlatformAuditLog, site=public_admin_site)
class AuditLogAdmin(admin.ModelAdmin):
    """Read-only for everybody (superusers too): entries are written by the platform only,
    and the database refuses changes anyway. Exact actors, actions and ids: the search box."""

    list_display = (
        "created_at",
        "actor",
        "action",
        "outcome",
        "target_type",
        "target_id",
        "ip_address",
    )
    list_filter = (
        ("created_at", admin.DateFieldListFilter),
        "outcome",
        ActorKindFilter,
        ActionFamilyFilter,
    )
    search_fields = ("actor", "action", "target_id", "request_id")
    date_hierarchy = "created_at"
    readonly_fields = (*list_display, "request_id", "details", "prev_hash", "entry_hash")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
