"""``migrate`` is ``migrate_schemas`` (as in django-tenants), with the tenant template kept
current: Django's test database set-up calls ``migrate`` by name."""

from __future__ import annotations

from tenants.management.commands.migrate_schemas import Command

__all__ = ["Command"]
