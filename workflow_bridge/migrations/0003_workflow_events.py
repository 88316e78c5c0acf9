"""The workflow event log's constraints and its NOTIFY trigger, and the NATS outbox.

The statement-level trigger NOTIFYs ``workflow_events`` with ``<schema>:<resource_id>:<last
seq>`` for each resource and ``<schema>:<workflow_id>:<last workflow_seq>`` for each workflow a
batch of history entries touched (as ``agents`` 0002 does for executions): delivered at COMMIT
only, never for a rolled-back entry, and no writer can forget it."""

import django.db.models.deletion
from django.db import migrations, models

FORWARD = """
CREATE OR REPLACE FUNCTION workflow_bridge_resourceevent_notify() RETURNS trigger AS $$
DECLARE
    item record;
BEGIN
    FOR item IN
        SELECT resource_id AS log_id, max(seq)::bigint AS last_seq FROM new_rows GROUP BY resource_id
        UNION ALL
        SELECT workflow_id, max(workflow_seq) FROM new_rows GROUP BY workflow_id
    LOOP
        PERFORM pg_notify('workflow_events', current_schema() || ':' || item.log_id || ':' || item.last_seq);
    END LOOP;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER workflow_bridge_resourceevent_notify
    AFTER INSERT ON workflow_bridge_resourceevent
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION workflow_bridge_resourceevent_notify();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS workflow_bridge_resourceevent_notify ON workflow_bridge_resourceevent;
DROP FUNCTION IF EXISTS workflow_bridge_resourceevent_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("workflow_bridge", "0002_resourceevent_workflow_seq")]

    operations = [
        migrations.AlterField(
            model_name="resourceevent",
            name="workflow",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="events",
                to="workflow_bridge.workflow",
            ),
        ),
        migrations.AlterField(
            model_name="resourceevent",
            name="workflow_seq",
            field=models.PositiveBigIntegerField(),
        ),
        migrations.AddConstraint(
            model_name="resourceevent",
            constraint=models.UniqueConstraint(
                fields=("workflow", "workflow_seq"), name="resourceevent_unique_workflow_seq"
            ),
        ),
        migrations.CreateModel(
            name="EventOutbox",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("subject", models.CharField(max_length=255)),
                ("msg_id", models.CharField(max_length=200, unique=True)),
                ("payload", models.JSONField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("last_error", models.TextField(blank=True)),
                ("published_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "ordering": ["id"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("published_at__isnull", True)),
                        fields=["id"],
                        name="eventoutbox_pending",
                    ),
                    models.Index(
                        condition=models.Q(("published_at__isnull", False)),
                        fields=["published_at"],
                        name="eventoutbox_published",
                    ),
                ],
            },
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
