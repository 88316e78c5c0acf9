from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.errors import DomainError
from tenants.services import tenant_create


class Command(BaseCommand):
    help = "Create a tenant: its schema, domain, first operator and first admin API key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--domain", required=True, help="e.g. acme.localhost")
        parser.add_argument("--admin-username", default="admin")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            created = tenant_create(
                slug=options["slug"],
                name=options["name"],
                domain=options["domain"],
                admin_username=options["admin_username"],
                actor="command:create_tenant",
            )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        result = {
            "tenant": created.tenant.slug,
            "schema": created.tenant.schema_name,
            "domain": created.domain.domain,
            "api_key": created.api_key,
            "admin_username": created.admin_username,
            "admin_password": created.admin_password,
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        for key, value in result.items():
            self.stdout.write(f"{key:15} {value}")
        self.stdout.write("The password and API key are shown once.")
