from __future__ import annotations

import logging

from django.apps import AppConfig

logger = logging.getLogger("tenants")


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        logger.info("database: %s", settings.DATABASE.describe())

        from django.db.models.signals import post_delete, post_save

        from tenants.key_cache import announce_credential_change
        from tenants.models import ApiKey, Plan, Tenant
        from tenants.plans import announce_plan_change

        def plan_changed(**_: object) -> None:
            announce_plan_change()

        def key_changed(instance: ApiKey, **_: object) -> None:
            announce_credential_change(instance.prefix)

        post_save.connect(key_changed, sender=ApiKey, weak=False, dispatch_uid="key-changed")
        post_delete.connect(key_changed, sender=ApiKey, weak=False, dispatch_uid="key-deleted")

        for model in (Plan, Tenant):
            post_save.connect(
                plan_changed, sender=model, weak=False, dispatch_uid=f"plan-{model.__name__}"
            )
            post_delete.connect(
                plan_changed, sender=model, weak=False, dispatch_uid=f"plan-{model.__name__}-d"
            )
