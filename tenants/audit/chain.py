"""The hash chain of an audit table, defined once in SQL for the migrations and the checks.

Each entry stores ``prev_hash`` (the entry before it's ``entry_hash``; ``""`` for the first)
and ``entry_hash = audit_entry_hash(prev_hash, entry)``: the hex SHA-256 of a JSON array of
the previous hash and the entry's content (created_at in UTC, actor, action, outcome,
target_type, target_id, ip_address, request_id, details). Neither the id nor the schema goes
into it, so a log copied in id order into another schema (a restored backup) still verifies.
The text is PostgreSQL's ``jsonb`` output, which is canonical; the hash is therefore computed
by the database, both when an entry is written (a BEFORE INSERT trigger) and when a chain is
checked (:func:`first_break`): Python never re-serialises an entry.

The trigger takes a transaction-level advisory lock keyed by the table's schema, so that the
entries of one log are appended one at a time: each sees the entry committed before it. Ids
come from a sequence before the lock is taken; an id that lost the race (smaller than the
last stored one) is drawn again under the lock, so id order is chain order.

Changing what the hash covers would break every existing chain: do it only with a new
migration that re-chains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from psycopg import sql

# First key of the two-key advisory lock: the audit chains' own class of locks, so that they
# never contend with another user of advisory locks keyed by a schema name.
LOCK_CLASS = 7_311_001


def _names(schema: str, table: str) -> dict[str, sql.Composable]:
    return {
        "table": sql.Identifier(schema, table),
        "hash_fn": sql.Identifier(schema, "audit_entry_hash"),
        "append_fn": sql.Identifier(schema, f"{table}_chain_append"),
        "truncate_fn": sql.Identifier(schema, f"{table}_refuse_truncate"),
        "append_trigger": sql.Identifier(f"{table}_chain"),
        "truncate_trigger": sql.Identifier(f"{table}_no_truncate"),
        "lock_class": sql.Literal(LOCK_CLASS),
    }


HASH_FUNCTION = """
CREATE OR REPLACE FUNCTION {hash_fn}(prev text, entry {table}) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT encode(sha256(convert_to(jsonb_build_array(
        coalesce(prev, ''),
        to_char(entry.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        entry.actor,
        entry.action,
        entry.outcome,
        entry.target_type,
        entry.target_id,
        host(entry.ip_address),
        entry.request_id,
        entry.details
    )::text, 'UTF8')), 'hex')
$$;
"""

# Whatever prev_hash/entry_hash (or an out-of-order id) an INSERT brings is replaced: the
# chain is the database's to compute.
APPEND_FUNCTION = """
CREATE OR REPLACE FUNCTION {append_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_id bigint;
    last_hash text;
BEGIN
    PERFORM pg_advisory_xact_lock({lock_class}, hashtext(TG_TABLE_SCHEMA));
    -- A new statement, so (READ COMMITTED) a new snapshot: it sees the entry committed by
    -- whoever held the lock before.
    SELECT id, entry_hash INTO last_id, last_hash FROM {table} ORDER BY id DESC LIMIT 1;
    IF last_id IS NOT NULL AND NEW.id <= last_id THEN
        NEW.id := nextval({sequence});
    END IF;
    NEW.prev_hash := coalesce(last_hash, '');
    NEW.entry_hash := {hash_fn}(NEW.prev_hash, NEW);
    RETURN NEW;
END;
$$;

CREATE TRIGGER {append_trigger} BEFORE INSERT ON {table}
    FOR EACH ROW EXECUTE FUNCTION {append_fn}();
"""

TRUNCATE_GUARD = """
CREATE OR REPLACE FUNCTION {truncate_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log entries are append-only: TRUNCATE refused';
END;
$$;

CREATE TRIGGER {truncate_trigger} BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {truncate_fn}();
"""

# Existing entries (a log that predates the chain) are chained in id order, with the
# append-only trigger (whose name is given) lifted for the length of the migration.
CHAIN_EXISTING = """
ALTER TABLE {table} DISABLE TRIGGER {guard_trigger};
DO $$
DECLARE
    entry {table}%ROWTYPE;
    prev text := '';
BEGIN
    FOR entry IN SELECT * FROM {table} ORDER BY id LOOP
        UPDATE {table} SET prev_hash = prev, entry_hash = {hash_fn}(prev, entry)
            WHERE id = entry.id RETURNING entry_hash INTO prev;
    END LOOP;
END;
$$;
ALTER TABLE {table} ENABLE TRIGGER {guard_trigger};
"""

# The append-only guard of a new log (the tenant log's predates this module: migration 0002).
CHANGE_GUARD = """
CREATE OR REPLACE FUNCTION {guard_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log entries are append-only';
END;
$$;

CREATE TRIGGER {guard_trigger} BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {guard_fn}();
"""

DROP = """
DROP TRIGGER IF EXISTS {truncate_trigger} ON {table};
DROP TRIGGER IF EXISTS {append_trigger} ON {table};
DROP FUNCTION IF EXISTS {truncate_fn}();
DROP FUNCTION IF EXISTS {append_fn}();
DROP FUNCTION IF EXISTS {hash_fn}(text, {table});
"""


def _run(schema_editor: BaseDatabaseSchemaEditor, template: str, **names: sql.Composable) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(sql.SQL(template).format(**names))


def install_chain(
    schema_editor: BaseDatabaseSchemaEditor, *, schema: str, table: str, guard_trigger: str
) -> None:
    """Create the hash function and the triggers on ``schema.table``, then chain the entries
    it already holds. Names are schema-qualified: the triggers never depend on the
    ``search_path`` of whoever inserts."""
    names = _names(schema, table)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [f'"{schema}"."{table}"'])
        (sequence,) = cursor.fetchone()
    names["sequence"] = sql.Literal(sequence)
    _run(schema_editor, HASH_FUNCTION, **names)
    _run(schema_editor, CHAIN_EXISTING, guard_trigger=sql.Identifier(guard_trigger), **names)
    _run(schema_editor, APPEND_FUNCTION, **names)
    _run(schema_editor, TRUNCATE_GUARD, **names)


def install_change_guard(
    schema_editor: BaseDatabaseSchemaEditor, *, schema: str, table: str, guard_trigger: str
) -> None:
    """Refuse UPDATE and DELETE on ``schema.table`` (trigger ``guard_trigger``)."""
    _run(
        schema_editor,
        CHANGE_GUARD,
        guard_fn=sql.Identifier(schema, f"{table}_refuse_change"),
        guard_trigger=sql.Identifier(guard_trigger),
        **_names(schema, table),
    )


def remove_chain(schema_editor: BaseDatabaseSchemaEditor, *, schema: str, table: str) -> None:
    _run(schema_editor, DROP, **_names(schema, table))


# ---- checking ----


@dataclass(frozen=True)
class ChainBreak:
    """The first entry (in id order) whose link or hash is wrong."""

    entry_id: int
    reason: str  # "link": prev_hash is not the entry before's hash; "hash": content changed


@dataclass(frozen=True)
class ChainReport:
    schema: str
    entries: int
    head: str  # entry_hash of the last entry ("" for an empty log)
    broken: ChainBreak | None


CHECK = """
SELECT count(*),
       (SELECT entry_hash FROM {table} ORDER BY id DESC LIMIT 1),
       (SELECT id FROM checked WHERE NOT linked OR NOT intact ORDER BY id LIMIT 1),
       (SELECT linked FROM checked WHERE NOT linked OR NOT intact ORDER BY id LIMIT 1)
FROM checked
"""

CHECKED = """
WITH checked AS (
    SELECT entry.id,
           entry.prev_hash = coalesce(lag(entry.entry_hash) OVER (ORDER BY entry.id), '')
               AS linked,
           entry.entry_hash = {hash_fn}(entry.prev_hash, entry) AS intact
    FROM {table} AS entry
)
"""


def first_break(*, schema: str, table: str) -> ChainReport:
    """Check one chain in one statement: every entry must hold the previous entry's hash and
    its own hash must match its content. A changed entry breaks its hash; a deleted one the
    link of the entry after it. Removing entries from the end leaves a shorter valid chain:
    compare :attr:`ChainReport.head` with a head recorded earlier (an export) to see that."""
    names = _names(schema, table)
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL(CHECKED + CHECK).format(**names))
        row: Any = cursor.fetchone()
    count, head, broken_id, linked = row
    broken = None
    if broken_id is not None:
        broken = ChainBreak(broken_id, "hash" if linked else "link")
    return ChainReport(schema, count, head or "", broken)
