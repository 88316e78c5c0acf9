from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import schema_context

from tenants.erasure import tenant_export
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Export everything the platform holds for a tenant, for the tenant (GDPR-style), as "
        "JSON lines: its tenant row, domains and API keys (no hash), and every row "
        "of its schema. Secrets are redacted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--output", required=True, metavar="FILE")

    def handle(self, *args: Any, **options: Any) -> None:
        with schema_context("public"):
            tenant = Tenant.objects.select_related("plan").filter(slug=options["slug"]).first()
        if tenant is None:
            raise CommandError(f"no tenant {options['slug']!r}")
        summary = tenant_export(
            tenant=tenant, output=Path(options["output"]), actor="command:tenant_export"
        )
        total = sum(summary.rows.values())
        self.stdout.write(f"{tenant.slug}: {total} row(s) exported to {summary.path}")
