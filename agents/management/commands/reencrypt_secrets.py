from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django_tenants.utils import schema_context

from agents.crypto import field_key_ring
from agents.services.credentials import credentials_reencrypt
from agents.services.tool_secrets import tool_secrets_reencrypt
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Re-seal every provider secret and tool header secret (agents and their versions) with "
        "the first key of FIELD_ENCRYPTION_KEYS, in every tenant. Run after putting a new key "
        "first; then the old key can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        active = field_key_ring().active_kid
        total = tools_total = 0
        for tenant in Tenant.objects.order_by("slug"):
            with schema_context(tenant.schema_name), transaction.atomic():
                changed = credentials_reencrypt()
                tools_changed = tool_secrets_reencrypt()
            total += changed
            tools_total += tools_changed
            if changed:
                self.stdout.write(
                    f"{tenant.slug}: {changed} credential(s) re-sealed with key {active!r}"
                )
            if tools_changed:
                self.stdout.write(
                    f"{tenant.slug}: tool secrets of {tools_changed} agent(s) or version(s) "
                    f"re-sealed with key {active!r}"
                )
        self.stdout.write(
            f"done: {total} credential(s) and {tools_total} agent(s) or version(s) re-sealed"
        )
