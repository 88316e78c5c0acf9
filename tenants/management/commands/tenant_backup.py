from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import schema_context

from config.errors import DomainError
from tenants.backup import tenant_backup
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Write one tenant's schema (every table, as stored: secrets stay sealed) to a file, "
        "gzip-compressed when the name ends in .gz. Restore with tenant_restore."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--output", required=True, metavar="FILE")

    def handle(self, *args: Any, **options: Any) -> None:
        with schema_context("public"):
            tenant = Tenant.objects.filter(slug=options["slug"]).first()
        if tenant is None:
            raise CommandError(f"no tenant {options['slug']!r}")
        try:
            summary = tenant_backup(
                tenant=tenant, output=Path(options["output"]), actor="command:tenant_backup"
            )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"{tenant.slug}: {summary.total} row(s) of {len(summary.rows)} table(s) "
            f"written to {summary.path}"
        )
