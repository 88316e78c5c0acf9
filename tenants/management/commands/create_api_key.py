from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from config.errors import DomainError
from tenants.roles import Role
from tenants.selectors import tenant_get_by_slug
from tenants.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a tenant and print it (shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--role", choices=Role.values, default=Role.USER)
        parser.add_argument("--name", default="")
        parser.add_argument("--expires-in-days", type=int, default=None)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_get_by_slug(options["tenant"])
        if tenant is None:
            raise CommandError(f"no tenant {options['tenant']!r}")
        days = options["expires_in_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-in-days must be positive")
        expires_at = timezone.now() + dt.timedelta(days=days) if days else None
        try:
            created = api_key_create(
                tenant=tenant,
                role=options["role"],
                name=options["name"],
                expires_at=expires_at,
                actor="command:create_api_key",
            )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        if options["json"]:
            self.stdout.write(json.dumps({"key": created.key, "role": created.api_key.role}))
        else:
            self.stdout.write(f"{created.key}  (role {created.api_key.role}; shown once)")
