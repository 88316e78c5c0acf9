"""Hash-chain the tenant's audit log in the database, and refuse TRUNCATE.

See ``tenants.audit.chain``: a BEFORE INSERT trigger computes ``prev_hash``/``entry_hash``
under a per-schema advisory lock; existing entries are chained here in id order. Afterwards
the model is unmanaged, so that Django's ``flush`` never tries to TRUNCATE the log.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

from tenants.audit.chain import install_chain, remove_chain


def _schema(schema_editor: Any) -> str:
    # django-tenants runs this once per tenant schema, with the connection set to it.
    return str(getattr(schema_editor.connection, "schema_name", "public"))


def forward(apps: Any, schema_editor: Any) -> None:
    install_chain(
        schema_editor,
        schema=_schema(schema_editor),
        table="audit_auditlog",
        guard_trigger="audit_auditlog_append_only",
    )


def backward(apps: Any, schema_editor: Any) -> None:
    remove_chain(schema_editor, schema=_schema(schema_editor), table="audit_auditlog")


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only")]

    operations = [
        migrations.AddField(
            model_name="auditlog",
            name="prev_hash",
            field=models.CharField(db_default="", editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="auditlog",
            name="entry_hash",
            field=models.CharField(db_default="", editable=False, max_length=64),
        ),
        migrations.RunPython(forward, backward),
        migrations.AlterModelOptions(
            name="auditlog",
            options={
                "managed": False,
                "ordering": ["-created_at", "-id"],
                "verbose_name": "audit entry",
                "verbose_name_plural": "audit log",
            },
        ),
    ]
