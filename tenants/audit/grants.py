"""The grants that keep the application's database role from changing audit logs.

The owner role (which runs migrations) owns every table; the application's role may read and
write ordinary tables but only SELECT and INSERT the audit tables. Without ownership or
superuser it can neither UPDATE, DELETE nor TRUNCATE them, nor step around their triggers
(``ALTER TABLE ... DISABLE TRIGGER`` needs the owner, ``session_replication_role`` a
superuser). ``docs/operations/audit.md`` quotes :data:`GRANTS`; a test runs it.
"""

from __future__ import annotations

from psycopg import sql

# Per schema; {schema}, {role} and {audit_table} are identifiers.
GRANTS = """\
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
REVOKE ALL ON {schema}.{audit_table} FROM {role};
GRANT SELECT, INSERT ON {schema}.{audit_table} TO {role};
"""

TENANT_AUDIT_TABLE = "audit_auditlog"
PLATFORM_AUDIT_TABLE = "tenants_platformauditlog"


def grant_statements(*, schema: str, role: str) -> sql.Composed:
    """:data:`GRANTS` for one schema (``public``: the platform log is its audit table)."""
    table = PLATFORM_AUDIT_TABLE if schema == "public" else TENANT_AUDIT_TABLE
    return sql.SQL(GRANTS).format(
        schema=sql.Identifier(schema),
        role=sql.Identifier(role),
        audit_table=sql.Identifier(table),
    )
