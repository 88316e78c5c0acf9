"""``migrate_schemas`` that also keeps the tenant template schema current.

After the library's run (public schema, then every tenant), the template new tenants are
copied from (``tenants.schema_template``) is rebuilt if it is missing or behind the
migrations. Every way the project migrates goes through here: ``make migrate``, the release
phase, ``bench/run.py`` and, through ``migrate`` (``tenants/management/commands/migrate.py``),
the tests' database set-up. A run for one schema (``--schema``) or one that only shows or
fakes migrations leaves the template alone.
"""

from __future__ import annotations

from typing import Any

from django_tenants.management.commands.migrate_schemas import (  # type: ignore[import-untyped]
    MigrateSchemasCommand,
)

from tenants.schema_template import template_build


class Command(MigrateSchemasCommand):  # type: ignore[misc]
    help = (
        "Updates the public and tenant schemas, then rebuilds the tenant template schema "
        "if it is missing or behind the migrations."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        super().handle(*args, **options)
        if (
            self.sync_tenant
            and not options.get("schema_name")
            and not options.get("plan")
            and not options.get("fake")
        ):
            rebuilt = template_build(verbosity=int(options.get("verbosity", 1)))
            if rebuilt and int(options.get("verbosity", 1)) > 0:
                self.stdout.write("Tenant template schema rebuilt.")
