"""Fewer indexes on the two hottest tables: every run inserts an execution, updates it (not a
HOT update: its status is indexed) and inserts its events, and each index costs each of those.

Dropped, because another index already serves every query they could: the agent index of
executions (execution_agent_recent leads with agent), the execution index of events (the unique
(execution, seq) leads with it), and the varchar_pattern_ops twins Django makes for text keys
(nothing looks executions up by LIKE). The parent index stays, as a plain btree.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0010_run_config_changes_notify"),
    ]

    operations = [
        migrations.AlterField(
            model_name="execution",
            name="agent",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="executions",
                to="agents.agent",
            ),
        ),
        migrations.AlterField(
            model_name="execution",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="children",
                to="agents.execution",
            ),
        ),
        migrations.AlterField(
            model_name="executionevent",
            name="execution",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="events",
                to="agents.execution",
            ),
        ),
        migrations.AddIndex(
            model_name="execution",
            index=models.Index(fields=["parent"], name="execution_parent"),
        ),
        # Django's name for the primary key's LIKE twin (a hash of table and column: the same in
        # every tenant schema). The key itself stays unique and indexed.
        migrations.RunSQL(
            "DROP INDEX IF EXISTS agents_execution_id_dc13cfb3_like",
            "CREATE INDEX IF NOT EXISTS agents_execution_id_dc13cfb3_like"
            " ON agents_execution (id varchar_pattern_ops)",
        ),
    ]
