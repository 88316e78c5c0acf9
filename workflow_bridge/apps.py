from __future__ import annotations

from django.apps import AppConfig


class WorkflowBridgeConfig(AppConfig):
    name = "workflow_bridge"
    verbose_name = "Workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The execution core calls this when a run the bridge started ends (in every process).
        from agents.core.hooks import register_run_ended
        from workflow_bridge.bridge import APPLY_HOOK, run_ended

        register_run_ended(APPLY_HOOK, run_ended)
