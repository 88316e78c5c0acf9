"""Announce changes to what runs read at admission to every process: statement-level triggers
NOTIFY ``run_config_changes`` with the schema after any INSERT, UPDATE, DELETE or TRUNCATE of agents,
agent versions, provider credentials or model prices (the admin, REST, services, bulk updates,
raw SQL alike). Delivered at COMMIT only. Each process's event hub then forgets the schema's
cached agents and price table (``agents.core.run_config``). The agents table's own
``agent_changes`` trigger (0006) stays: it serves MCP's tool lists."""

from __future__ import annotations

from django.db import migrations

TABLES = ("agents_agent", "agents_agentversion", "agents_providercredential", "agents_modelprice")

FORWARD = """
CREATE OR REPLACE FUNCTION agents_run_config_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('run_config_changes', current_schema());
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
""" + "".join(
    f"""
CREATE TRIGGER {table}_run_config_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION agents_run_config_notify();
"""
    for table in TABLES
)

BACKWARD = (
    "".join(f"DROP TRIGGER IF EXISTS {table}_run_config_notify ON {table};\n" for table in TABLES)
    + "DROP FUNCTION IF EXISTS agents_run_config_notify();\n"
)


class Migration(migrations.Migration):
    dependencies = [("agents", "0009_usage_counters_and_reservations")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
