"""Number every history entry per workflow too (``workflow_seq``), for the workflow's event
stream: the fields, the counter, and existing entries numbered in the order they were written."""

import django.db.models.deletion
from django.db import migrations, models

BACKFILL = """
UPDATE workflow_bridge_resourceevent AS e
   SET workflow_id = r.workflow_id
  FROM workflow_bridge_resource AS r
 WHERE e.resource_id = r.id;

UPDATE workflow_bridge_resourceevent AS e
   SET workflow_seq = n.rn
  FROM (SELECT id, row_number() OVER (PARTITION BY workflow_id ORDER BY created_at, id) AS rn
          FROM workflow_bridge_resourceevent) AS n
 WHERE e.id = n.id;

INSERT INTO workflow_bridge_workfloweventcounter (workflow_id, last_seq)
SELECT workflow_id, max(workflow_seq) FROM workflow_bridge_resourceevent GROUP BY workflow_id;
"""


class Migration(migrations.Migration):
    dependencies = [("workflow_bridge", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="resourceevent",
            name="workflow",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="events",
                to="workflow_bridge.workflow",
            ),
        ),
        migrations.AddField(
            model_name="resourceevent",
            name="workflow_seq",
            field=models.PositiveBigIntegerField(null=True),
        ),
        migrations.CreateModel(
            name="WorkflowEventCounter",
            fields=[
                (
                    "workflow",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="event_counter",
                        serialize=False,
                        to="workflow_bridge.workflow",
                    ),
                ),
                ("last_seq", models.PositiveBigIntegerField(default=0)),
            ],
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
    ]
