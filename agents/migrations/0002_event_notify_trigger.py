"""Announce new execution events to every process: a statement-level trigger NOTIFYs
``execution_events`` with ``<schema>:<execution_id>:<last seq>`` for each execution a batch
touched. Delivered at COMMIT only, never for a rolled-back insert, and no writer can forget it."""

from __future__ import annotations

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION agents_executionevent_notify() RETURNS trigger AS $$
DECLARE
    item record;
BEGIN
    FOR item IN SELECT execution_id, max(seq) AS last_seq FROM new_rows GROUP BY execution_id LOOP
        PERFORM pg_notify('execution_events', current_schema() || ':' || item.execution_id || ':' || item.last_seq);
    END LOOP;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER agents_executionevent_notify
    AFTER INSERT ON agents_executionevent
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agents_executionevent_notify();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS agents_executionevent_notify ON agents_executionevent;
DROP FUNCTION IF EXISTS agents_executionevent_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("agents", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
