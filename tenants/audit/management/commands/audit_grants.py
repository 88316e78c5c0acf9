"""``manage.py audit_grants --role cba_app``: the GRANT statements of every schema (public and
each tenant's) for the application's database role, printed for the owner role to run:

    manage.py audit_grants --role cba_app | psql "$OWNER_DATABASE_URL" -v ON_ERROR_STOP=1

Run it again after every migration and every new tenant (new tables get no grants).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from django_tenants.utils import schema_context

from tenants.audit.grants import grant_statements
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Print the grants that let the application's role only read and append audit logs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--role", required=True, help="the application's database role")

    def handle(self, *args: Any, **options: Any) -> None:
        with schema_context("public"):
            schemas = [
                "public",
                *Tenant.objects.order_by("slug").values_list("schema_name", flat=True),
            ]
        with connection.cursor() as cursor:
            for schema in schemas:
                self.stdout.write(
                    grant_statements(schema=schema, role=options["role"]).as_string(
                        cursor.connection
                    )
                )
