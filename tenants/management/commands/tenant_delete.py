from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import schema_context

from config.errors import DomainError
from tenants.erasure import tenant_delete
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Delete a tenant completely: drop its schema and every public row of it (domains, API "
        "keys, stream leases, rate buckets, its queued jobs, the platform admin's history of "
        "them). Cannot be undone: take a tenant_backup (or tenant_export) first. The "
        "platform audit log keeps its entries and records the deletion."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument(
            "--confirm", required=True, metavar="SLUG", help="the slug again, to be sure"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with schema_context("public"):
            tenant = Tenant.objects.filter(slug=options["slug"]).first()
        if tenant is None:
            raise CommandError(f"no tenant {options['slug']!r}")
        try:
            summary = tenant_delete(
                tenant=tenant, confirm=options["confirm"], actor="command:tenant_delete"
            )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        removed = ", ".join(f"{n} {table}" for table, n in summary.public_rows.items() if n)
        self.stdout.write(
            f"{summary.slug}: deleted (schema {summary.schema_name} dropped; {removed})"
        )
