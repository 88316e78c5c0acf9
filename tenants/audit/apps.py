from __future__ import annotations

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "tenants.audit"
    label = "audit"
    verbose_name = "Audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tenants.audit import hooks, signals

        signals.connect()
        hooks.connect()
