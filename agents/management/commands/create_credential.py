"""``python manage.py create_credential --tenant acme --name main --kind openai``: store a
provider credential for a tenant (sealed at rest, like the admin does). The API key is read from
the environment variable named by ``--api-key-env`` (never from the command line, which other
users of the machine can read in the process list)."""

from __future__ import annotations

import json
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import schema_context

from agents.models import ProviderCredential, ProviderKind
from agents.services.credentials import credential_save
from config.errors import DomainError
from tenants.selectors import tenant_get_by_slug


class Command(BaseCommand):
    help = "Create or update a provider credential of a tenant."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--kind", required=True, choices=ProviderKind.values)
        parser.add_argument("--base-url", default="", help="default: the provider's own")
        parser.add_argument(
            "--api-key-env", default=None, help="name of the environment variable holding the key"
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_get_by_slug(options["tenant"])
        if tenant is None:
            raise CommandError(f"no tenant {options['tenant']!r}")
        api_key = None
        if options["api_key_env"]:
            api_key = os.environ.get(options["api_key_env"])
            if not api_key:
                raise CommandError(f"the environment variable {options['api_key_env']} is empty")
        try:
            with schema_context(tenant.schema_name):
                existing = ProviderCredential.objects.filter(name=options["name"]).first()
                credential = credential_save(
                    credential=existing,
                    name=options["name"],
                    kind=options["kind"],
                    base_url=options["base_url"],
                    api_key=api_key,
                )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        result = {"name": credential.name, "kind": credential.kind, "base_url": credential.base_url}
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            self.stdout.write(f"credential {credential.name} ({credential.kind}) stored")
