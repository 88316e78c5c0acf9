from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from config.admin_sites import public_admin_site, tenant_admin_site
from tenants.audit.models import AuditLog
from tenants.models import PlatformAuditLog


@admin.register(AuditLog, site=tenant_admin_site)
@admin.register(PlatformAuditLog, site=public_admin_site)
class AuditLogAdmin(admin.ModelAdmin):
    """Read-only for everybody (superusers too): entries are written by the platform only,
    and the database refuses changes anyway."""

    list_display = (
        "created_at",
        "actor",
        "action",
        "outcome",
        "target_type",
        "target_id",
        "ip_address",
    )
    list_filter = ("outcome", "action")
    search_fields = ("actor", "action", "target_id", "request_id")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
