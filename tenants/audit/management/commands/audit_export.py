"""``manage.py audit_export``: a tenant's (or the platform's) audit log as JSON lines, in
chain order.

    manage.py audit_export --tenant acme --since 2026-12-01 --until 2026-12-08T00:00:00Z \\
        --output acme-audit.jsonl
    manage.py audit_export --platform --output platform-audit.jsonl

Each line is one entry with its ``prev_hash`` and ``entry_hash``; the last line's
``entry_hash`` is the chain's head at export time. Times without a zone are UTC.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import IO, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import schema_context

from tenants.audit.selectors import audit_export_rows, parse_instant, platform_export_rows
from tenants.models import Tenant


def _instant(name: str, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise CommandError(f"{name}: {exc}") from None


class Command(BaseCommand):
    help = "Write a tenant's audit log as JSON lines (with the chain's hashes)."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--tenant", help="tenant slug")
        which.add_argument("--platform", action="store_true", help="the platform log")
        parser.add_argument("--since", help="ISO 8601: entries at or after this instant")
        parser.add_argument("--until", help="ISO 8601: entries before this instant")
        parser.add_argument("--output", help="file to write (default: standard output)")

    def handle(self, *args: Any, **options: Any) -> None:
        since = _instant("--since", options["since"])
        until = _instant("--until", options["until"])
        if options["platform"]:
            rows = platform_export_rows(since=since, until=until)
        else:
            with schema_context("public"):
                tenant = Tenant.objects.filter(slug=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"--tenant: no tenant {options['tenant']!r}")
            rows = audit_export_rows(schema_name=tenant.schema_name, since=since, until=until)
        output: str | None = options["output"]
        if output:
            with open(output, "w", encoding="utf-8") as stream:
                count = self._write(stream, rows)
            self.stderr.write(f"{count} entries written to {output}")
        else:
            self._write(self.stdout, rows)

    def _write(self, stream: IO[str] | Any, rows: Iterator[dict[str, Any]]) -> int:
        count = 0
        for row in rows:
            # ensure_ascii off: actors and details are written as they are stored.
            line = json.dumps(row, ensure_ascii=False, separators=(",", ":"))
            if stream is self.stdout:
                stream.write(line)
            else:
                stream.write(line + "\n")
            count += 1
        return count
