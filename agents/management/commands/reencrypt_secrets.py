from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django_tenants.utils import schema_context

from agents.crypto import field_key_ring
from agents.services.credentials import credentials_reencrypt
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Re-seal every provider secret with the first key of FIELD_ENCRYPTION_KEYS, in every tenant. "
        "Run after putting a new key first; then the old key can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        active = field_key_ring().active_kid
        total = 0
        for tenant in Tenant.objects.order_by("slug"):
            with schema_context(tenant.schema_name), transaction.atomic():
                changed = credentials_reencrypt()
            total += changed
            if changed:
                self.stdout.write(
                    f"{tenant.slug}: {changed} credential(s) re-sealed with key {active!r}"
                )
        self.stdout.write(f"done: {total} credential(s) re-sealed")
