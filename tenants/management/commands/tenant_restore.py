from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import schema_context

from config.errors import DomainError
from tenants.backup import tenant_restore
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Restore a tenant_backup file into an existing tenant (--tenant SLUG; refused unless "
        "its schema is empty or --replace is given) or into a new tenant (--new-tenant SLUG "
        "--name NAME [--domain HOST]). All or nothing; refused when the file was made at "
        "another migration state."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--tenant", metavar="SLUG", help="an existing tenant")
        target.add_argument("--new-tenant", metavar="SLUG", help="a tenant created for it")
        parser.add_argument("--name", default="", help="the new tenant's name")
        parser.add_argument("--domain", default=None, help="the new tenant's primary domain")
        parser.add_argument(
            "--replace", action="store_true", help="replace all of the existing tenant's data"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        source = Path(options["file"])
        if not source.is_file():
            raise CommandError(f"no file {str(source)!r}")
        tenant: Tenant | None = None
        if options["tenant"]:
            with schema_context("public"):
                tenant = Tenant.objects.filter(slug=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"--tenant: no tenant {options['tenant']!r}")
        elif not options["name"]:
            raise CommandError("--new-tenant needs --name")
        elif options["replace"]:
            raise CommandError("--replace is for --tenant (a new tenant has nothing to replace)")
        try:
            summary = tenant_restore(
                source=source,
                tenant=tenant,
                replace=options["replace"],
                new_slug=options["new_tenant"],
                new_name=options["name"],
                new_domain=options["domain"],
                actor="command:tenant_restore",
            )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        made = "created and restored" if summary.created else "restored"
        self.stdout.write(
            f"{summary.tenant.slug}: {made}, {summary.total} row(s) in "
            f"{len(summary.rows)} table(s) (schema {summary.tenant.schema_name})"
        )
        if summary.created:
            self.stdout.write(
                "API keys are not part of a backup: make one with "
                f"`manage.py create_api_key --tenant {summary.tenant.slug}`"
            )
