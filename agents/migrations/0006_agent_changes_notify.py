"""Announce changes to a tenant's agents to every process: a statement-level trigger NOTIFYs
``agent_changes`` with ``<schema>:agents:0`` after any INSERT, UPDATE or DELETE of agents (the
admin, REST, services, bulk updates, raw SQL alike). Delivered at COMMIT only. Followers of the
tool list (MCP's tools/list_changed) wake on it and compare what they listed."""

from __future__ import annotations

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION agents_agent_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('agent_changes', current_schema() || ':agents:0');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER agents_agent_notify
    AFTER INSERT OR UPDATE OR DELETE ON agents_agent
    FOR EACH STATEMENT EXECUTE FUNCTION agents_agent_notify();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS agents_agent_notify ON agents_agent;
DROP FUNCTION IF EXISTS agents_agent_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("agents", "0005_seal_tool_header_secrets")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
