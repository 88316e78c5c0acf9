"""``manage.py audit_verify``: check the hash chains of audit logs.

    manage.py audit_verify                      # every tenant and the platform log
    manage.py audit_verify --tenant acme --tenant globex
    manage.py audit_verify --platform

Prints one line per chain (entries, head hash); exits with status 1 when a chain is broken,
naming its first broken entry. Record the head hashes somewhere else (or keep exports): an
entry removed from the very end leaves a shorter chain that is still valid.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import schema_context

from tenants.audit.chain import ChainReport
from tenants.audit.selectors import audit_chain_check, platform_chain_check
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Verify the hash chains of the tenants' audit logs and of the platform log."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tenant", action="append", default=[], help="tenant slug to check (repeat)"
        )
        parser.add_argument("--platform", action="store_true", help="check the platform log")

    def handle(self, *args: Any, **options: Any) -> None:
        slugs: list[str] = options["tenant"]
        platform: bool = options["platform"]
        everything = not slugs and not platform
        with schema_context("public"):
            tenants = Tenant.objects.order_by("slug")
            if not everything:
                tenants = tenants.filter(slug__in=slugs)
            chosen = [(t.slug, t.schema_name) for t in tenants]
        unknown = sorted(set(slugs) - {slug for slug, _ in chosen})
        if unknown:
            raise CommandError(f"--tenant: no tenant {', '.join(map(repr, unknown))}")
        reports = [(f"tenant {slug}", audit_chain_check(schema_name=s)) for slug, s in chosen]
        if platform or everything:
            reports.append(("platform", platform_chain_check()))
        broken = 0
        for label, report in reports:
            broken += self._print(label, report)
        if broken:
            raise CommandError(f"{broken} audit chain(s) broken", returncode=1)

    def _print(self, label: str, report: ChainReport) -> int:
        if report.broken is None:
            self.stdout.write(f"ok      {label}: {report.entries} entries, head {report.head}")
            return 0
        what = (
            "its content does not match its hash"
            if report.broken.reason == "hash"
            else "it does not hold the previous entry's hash (an entry before it was removed "
            "or changed)"
        )
        self.stdout.write(
            f"BROKEN  {label}: entry {report.broken.entry_id}: {what} ({report.entries} entries)"
        )
        return 1
