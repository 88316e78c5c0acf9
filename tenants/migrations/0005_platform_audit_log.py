"""The platform audit log (public schema), hash-chained and append-only like a tenant's.

Created as a managed model, given its triggers (``tenants.audit.chain``), then made unmanaged
so that Django's ``flush`` never tries to TRUNCATE it.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

from tenants.audit.chain import install_chain, install_change_guard, remove_chain

TABLE = "tenants_platformauditlog"
GUARD = "tenants_platformauditlog_append_only"


def forward(apps: Any, schema_editor: Any) -> None:
    install_change_guard(schema_editor, schema="public", table=TABLE, guard_trigger=GUARD)
    install_chain(schema_editor, schema="public", table=TABLE, guard_trigger=GUARD)


def backward(apps: Any, schema_editor: Any) -> None:
    remove_chain(schema_editor, schema="public", table=TABLE)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f'DROP TRIGGER IF EXISTS {GUARD} ON public."{TABLE}"')
        cursor.execute(f'DROP FUNCTION IF EXISTS public."{TABLE}_refuse_change"()')


class Migration(migrations.Migration):
    dependencies = [("tenants", "0004_tenant_log_content")]

    operations = [
        migrations.CreateModel(
            name="PlatformAuditLog",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                ("actor", models.CharField(max_length=200)),
                ("action", models.CharField(db_index=True, max_length=100)),
                ("outcome", models.CharField(choices=[("success", "Success"), ("failure", "Failure"), ("denied", "Denied")], default="success", max_length=16)),
                ("target_type", models.CharField(blank=True, max_length=50)),
                ("target_id", models.CharField(blank=True, max_length=100)),
                ("ip_address", models.GenericIPAddressField(blank=True, null=True)),
                ("request_id", models.CharField(blank=True, max_length=128)),
                ("details", models.JSONField(blank=True, default=dict)),
                ("prev_hash", models.CharField(db_default="", editable=False, max_length=64)),
                ("entry_hash", models.CharField(db_default="", editable=False, max_length=64)),
            ],
            options={
                "verbose_name": "platform audit entry",
                "verbose_name_plural": "platform audit log",
                "ordering": ["-created_at", "-id"],
            },
        ),
        migrations.RunPython(forward, backward),
        migrations.AlterModelOptions(
            name="platformauditlog",
            options={
                "managed": False,
                "ordering": ["-created_at", "-id"],
                "verbose_name": "platform audit entry",
                "verbose_name_plural": "platform audit log",
            },
        ),
    ]
