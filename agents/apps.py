from __future__ import annotations

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from agents.core.run_config import run_config_changed
        from agents.models import Agent, AgentVersion, ModelPrice, ProviderCredential
        from tenants.context import tenant_connection

        # The process that writes forgets its cached run configuration at once; the others
        # hear the tables' NOTIFY run_config_changes at COMMIT (migration 0010).
        def changed(**_: object) -> None:
            run_config_changed(tenant_connection.schema_name)

        for model in (Agent, AgentVersion, ProviderCredential, ModelPrice):
            for signal, kind in ((post_save, "saved"), (post_delete, "deleted")):
                signal.connect(
                    changed,
                    sender=model,
                    weak=False,
                    dispatch_uid=f"run-config-{model.__name__}-{kind}",
                )
