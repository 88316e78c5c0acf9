from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.retention import purge_tenant, retention_targets


class Command(BaseCommand):
    help = (
        "Delete ended executions (with their events and idempotency records) older than each "
        "active tenant's plan retention_days, in batches of RETENTION_BATCH_SIZE: what the "
        "hourly retention job does. Usage counters and the audit log are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", metavar="SLUG", help="Only this tenant.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )
        parser.add_argument(
            "--batch-size", type=int, default=None, help="Executions per transaction."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug: str | None = options["tenant"]
        batch_size: int | None = options["batch_size"]
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        targets = retention_targets(tenant_slug=slug)
        if slug is not None and not targets:
            raise CommandError(
                f"tenant {slug!r}: nothing to purge (no such tenant, suspended, or its plan "
                "has no retention_days)"
            )
        total = 0
        for target in targets:
            result = purge_tenant(target, batch_size=batch_size, dry_run=options["dry_run"])
            total += result.counts.executions
            self.stdout.write(result.describe())
        verb = "would purge" if options["dry_run"] else "purged"
        self.stdout.write(f"done: {verb} {total} execution(s) in {len(targets)} tenant(s)")
