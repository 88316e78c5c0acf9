from __future__ import annotations

import json
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django_tenants.utils import schema_context

from tenants.roles import Role
from tenants.selectors import tenant_get_by_slug
from tenants.services import api_key_create, tenant_create


class Command(BaseCommand):
    help = (
        "Development: make sure a demo tenant and a platform operator exist, and print fresh "
        "credentials for both (passwords of the demo accounts are reset on every run)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", default="demo")
        parser.add_argument("--domain", default="demo.localhost")
        parser.add_argument("--port", default="8000")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        slug, domain, port = options["slug"], options["domain"], options["port"]
        user_model = get_user_model()
        platform_password = secrets.token_urlsafe(12)
        with schema_context("public"):
            operator, _ = user_model.objects.get_or_create(
                username="platform", defaults={"is_staff": True, "is_superuser": True}
            )
            operator.set_password(platform_password)
            operator.save(update_fields=["password"])

        tenant = tenant_get_by_slug(slug)
        if tenant is None:
            created = tenant_create(
                slug=slug, name="Demo", domain=domain, actor="command:seed_demo"
            )
            tenant, api_key, password = created.tenant, created.api_key, created.admin_password
        else:
            api_key = api_key_create(
                tenant=tenant, role=Role.ADMIN, name="make run", actor="command:seed_demo"
            ).key
            password = secrets.token_urlsafe(12)
            with schema_context(tenant.schema_name):
                admin, _ = user_model.objects.get_or_create(
                    username="admin", defaults={"is_staff": True, "is_superuser": True}
                )
                admin.set_password(password)
                admin.save(update_fields=["password"])
        info = {
            "platform_admin": f"http://localhost:{port}/admin/",
            "platform_username": "platform",
            "platform_password": platform_password,
            "tenant": tenant.slug,
            "tenant_admin": f"http://{domain}:{port}/admin/",
            "tenant_username": "admin",
            "tenant_password": password,
            "api_key": api_key,
        }
        if options["json"]:
            self.stdout.write(json.dumps(info))
            return
        self.stdout.write("\n  Circuit Breaker Agents (development)\n")
        for key, value in info.items():
            self.stdout.write(f"  {key:18} {value}")
        self.stdout.write(
            f"\n  Try: curl -H 'Authorization: Bearer {api_key}' http://localhost:{port}/auth/whoami\n"
        )
