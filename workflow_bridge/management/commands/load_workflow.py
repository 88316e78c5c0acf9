"""``python manage.py load_workflow --tenant acme path/to/workflow.yaml``: create or update a
workflow (and its agent bindings) from a file kept in the tenant's own repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import schema_context

from config.errors import DomainError
from tenants.selectors import tenant_get_by_slug
from workflow_bridge.files import FileFormat, load_workflow, parse_workflow_file


class Command(BaseCommand):
    help = "Create or update a workflow from a YAML or JSON workflow file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the workflow file (.yaml, .yml or .json)")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument(
            "--format", choices=["yaml", "json"], default=None, help="default: by extension"
        )
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_get_by_slug(options["tenant"])
        if tenant is None:
            raise CommandError(f"no tenant {options['tenant']!r}")
        path = Path(options["file"])
        fmt: FileFormat = options["format"] or ("json" if path.suffix == ".json" else "yaml")
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        try:
            with schema_context(tenant.schema_name):
                loaded = load_workflow(
                    parse_workflow_file(text, fmt),
                    actor="command:load_workflow",
                    schema_name=tenant.schema_name,
                )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        result = {
            "workflow_id": loaded.workflow.pk,
            "slug": loaded.workflow.slug,
            "version": loaded.workflow.version,
            "created": loaded.created,
            "state_agents": loaded.state_agents,
            "activity_agents": loaded.activity_agents,
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
        elif loaded.created:
            self.stdout.write(f"workflow {loaded.workflow.slug} created")
        else:
            self.stdout.write(
                f"workflow {loaded.workflow.slug} at version {loaded.workflow.version}"
            )
