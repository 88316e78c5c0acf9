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
