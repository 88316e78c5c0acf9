"""The template schema new tenants are copied from (issue 13, target M7).

Migrating a new schema replays every tenant migration: about 1.7 s of rendering migration
states in Python for 0.6 s of SQL. A tenant's schema is instead copied from a template schema
(``settings.TENANT_TEMPLATE_SCHEMA``, never a tenant: no row, no domain, never served) that
``manage.py migrate_schemas`` keeps at the current migrations (:func:`template_build`).

The copy is made from the catalog, not by ``django_tenants.clone.CloneSchema``: that one
installs a 4,600-line function into ``public``, then runs ``migrate_schemas --fake`` (which
renders the migration states again), and fakes whatever migration the template lacks, so a
template behind the code would give tenants a schema missing a migration. Here:

- the template is used only if it has every migration on disk (the migration plan for it is
  empty); otherwise creation migrates, as before;
- names are kept (indexes, constraints, identity sequences) and every reference to the
  template schema in a definition (foreign keys, triggers, function bodies, defaults) is
  rewritten to the new schema; foreign keys to ``public`` stay as they are;
- rows are copied from every table (in a template only migrations write: ``django_migrations``
  and the content types and permissions that ``post_migrate`` creates), with each identity
  sequence set to the template's state, which is that of a freshly migrated schema;
- anything the copy does not reproduce (views, standalone sequences, types, grants, rules,
  policies, comments other than on tables and columns, ...) makes the template unusable and
  creation migrates: slower, never wrong.

Locking: a build holds an exclusive advisory lock, each copy a shared one until its
transaction ends, so no tenant is copied from a half-built template.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django_tenants.utils import schema_context

logger = logging.getLogger(__name__)

# pg_advisory_lock(classid, objid) keys; tenants.audit uses 7311001.
_LOCK_KEY = (7311007, 1)
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class TemplateUnusable(Exception):
    """The template holds something the copy would not reproduce exactly."""


def template_schema_name() -> str:
    """The template schema's name, or ``""`` when new tenants are migrated instead."""
    name: str = getattr(settings, "TENANT_TEMPLATE_SCHEMA", "")
    if not name:
        return ""
    if not _NAME.match(name) or name == "public" or name.startswith(("t_", "pg_")):
        # t_ is the tenants' prefix (Tenant.schema_for_slug): a template there could be a tenant.
        raise ImproperlyConfigured(
            "TENANT_TEMPLATE_SCHEMA must be a lowercase schema name not starting with t_ or pg_"
        )
    return name


def schema_exists(schema_name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema_name])
        return cursor.fetchone() is not None


def template_is_current(template: str) -> bool:
    """Whether ``template`` exists and has every migration on disk applied."""
    if not schema_exists(template):
        return False
    with schema_context(template):
        executor = MigrationExecutor(connection)
        return not executor.migration_plan(executor.loader.graph.leaf_nodes())


def _lock(*, shared: bool) -> None:
    # Transaction-level: the library's migration executor closes the connection after each
    # schema it migrates, which would drop a session-level lock half-way through a build.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT pg_advisory_xact_lock{'_shared' if shared else ''}(%s, %s)", _LOCK_KEY
        )


def template_build(*, verbosity: int = 0, force: bool = False) -> bool:
    """(Re)build the template if it is missing or behind the migrations (or ``force``).

    Rebuilt from nothing, not migrated forward, so that it is what migrating a new schema
    gives and holds no row but the migrations'. One transaction: until it commits, tenants
    are copied from the previous template (or wait for it), never from a half-built one; if
    it fails, the previous template stays. Returns whether it was rebuilt. Called by
    ``migrate_schemas`` (and so ``migrate``) after the tenants are migrated.
    """
    template = template_schema_name()
    if not template:
        return False
    with schema_context("public"), transaction.atomic():
        _lock(shared=False)
        if not force and template_is_current(template):
            return False
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{template}" CASCADE')
            cursor.execute(f'CREATE SCHEMA "{template}"')
        call_command(
            "migrate_schemas",
            tenant=True,
            schema_name=template,
            executor="standard",  # the others cannot run inside a transaction
            interactive=False,
            verbosity=verbosity,
        )
    logger.info("tenant template schema %s rebuilt", template)
    return True


def schema_clone(*, schema_name: str) -> bool:
    """Create schema ``schema_name`` as a copy of the template; ``False`` (nothing done) if
    there is no usable, current template, and the caller migrates instead.

    Runs in the caller's transaction (a savepoint of its own): a failure leaves nothing.
    """
    template = template_schema_name()
    if not template or not _NAME.match(schema_name):
        return False
    with schema_context("public"), transaction.atomic():
        # Until the caller's transaction ends: a build waits for the copies in flight.
        _lock(shared=True)
        if not template_is_current(template):
            logger.warning(
                "tenant template %s missing or behind: migrating %s", template, schema_name
            )
            return False
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('search_path')")
                search_path = cursor.fetchone()[0]
                # Every name in the catalog's definitions comes out schema-qualified.
                cursor.execute("SELECT set_config('search_path', 'pg_catalog', true)")
                script = clone_script(cursor, template=template, target=schema_name)
                # As a migration of the new schema runs (function bodies are checked).
                cursor.execute(
                    "SELECT set_config('search_path', %s, true)", [f"{schema_name}, public"]
                )
                cursor.execute(script)
                cursor.execute("SELECT set_config('search_path', %s, true)", [search_path])
        except TemplateUnusable as exc:
            logger.warning(
                "tenant template %s unusable (%s): migrating %s", template, exc, schema_name
            )
            return False
        except DatabaseError:
            # A bug of the copy, not of the tenant: log it loudly, and the tenant still gets
            # its schema by migrating.
            logger.exception(
                "copying tenant template %s failed: migrating %s", template, schema_name
            )
            return False
    return True


# ---- the copy script, read from the catalog ----------------------------------------------


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class _Table:
    name: str
    unlogged: bool
    options: list[str]
    comment: str | None
    columns: list[str] = field(default_factory=list)  # stored (not generated), in order
    actions: list[str] = field(default_factory=list)  # ALTER TABLE actions but foreign keys
    foreign: list[str] = field(default_factory=list)  # ADD CONSTRAINT ... FOREIGN KEY


# pg_attver: an option this server gives every new column by itself (seen on the PostgreSQL
# 15 here, in every schema, public included); not one of ours, so not a reason to refuse.
_UNSUPPORTED = """
SELECT 'object of ' || classid::regclass::text FROM pg_depend
 WHERE refclassid = 'pg_namespace'::regclass AND refobjid = %(ns)s
   AND classid NOT IN ('pg_class'::regclass, 'pg_proc'::regclass)
UNION ALL SELECT 'relation ' || relname || ' of kind ' || relkind::text FROM pg_class
 WHERE relnamespace = %(ns)s AND relkind NOT IN ('r', 'i', 'S')
UNION ALL SELECT 'relation ' || relname || ' with grants, row security, a tablespace,'
                 ' inheritance, a replica identity or clustering' FROM pg_class c
 WHERE relnamespace = %(ns)s AND (relacl IS NOT NULL OR relrowsecurity OR reltablespace <> 0
       OR relispartition OR relhassubclass OR (relkind = 'r' AND relreplident <> 'd')
       OR EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid)
       OR EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = c.oid AND indisclustered))
UNION ALL SELECT 'sequence ' || relname || ' not an identity' FROM pg_class c
 WHERE relnamespace = %(ns)s AND relkind = 'S' AND NOT EXISTS (
       SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
          AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'i')
UNION ALL SELECT 'column ' || c.relname || '.' || a.attname || ' with grants or options'
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = %(ns)s AND a.attnum > 0 AND NOT a.attisdropped
   AND (a.attacl IS NOT NULL OR coalesce(a.attstattarget::int, -1) <> -1
        OR EXISTS (SELECT 1 FROM unnest(a.attoptions) AS o WHERE o NOT LIKE 'pg\\_attver=%%'))
UNION ALL SELECT 'rule ' || r.rulename FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
 WHERE c.relnamespace = %(ns)s
UNION ALL SELECT 'policy ' || p.polname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
 WHERE c.relnamespace = %(ns)s
UNION ALL SELECT 'trigger ' || t.tgname || ' not simply enabled' FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = %(ns)s AND NOT t.tgisinternal AND t.tgenabled <> 'O'
UNION ALL SELECT 'routine ' || proname || ' of kind ' || prokind::text FROM pg_proc
 WHERE pronamespace = %(ns)s AND prokind NOT IN ('f', 'p')
UNION ALL SELECT 'comment on ' || d.classoid::regclass::text FROM pg_description d
 WHERE (d.classoid = 'pg_class'::regclass AND d.objoid IN (
          SELECT oid FROM pg_class WHERE relnamespace = %(ns)s AND relkind <> 'r'))
    OR (d.classoid = 'pg_proc'::regclass AND d.objoid IN (
          SELECT oid FROM pg_proc WHERE pronamespace = %(ns)s))
    OR (d.classoid = 'pg_constraint'::regclass AND d.objoid IN (
          SELECT oid FROM pg_constraint WHERE connamespace = %(ns)s))
    OR (d.classoid = 'pg_trigger'::regclass AND d.objoid IN (
          SELECT t.oid FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
           WHERE c.relnamespace = %(ns)s))
"""

_TABLES = """
SELECT c.oid, c.relname, c.relpersistence = 'u', coalesce(c.reloptions, '{}'),
       obj_description(c.oid, 'pg_class')
  FROM pg_class c WHERE c.relnamespace = %(ns)s AND c.relkind = 'r' ORDER BY c.oid
"""

_COLUMNS = """
SELECT a.attrelid, a.attname, a.attgenerated <> '', pg_get_expr(d.adbin, d.adrelid)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = %(ns)s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
"""

_IDENTITIES = """
SELECT d.refobjid, a.attname, a.attidentity = 'a', s.relname,
       nullif(format_type(q.seqtypid, NULL), format_type(a.atttypid, NULL)),
       q.seqstart, q.seqincrement, q.seqmin, q.seqmax, q.seqcache, q.seqcycle
  FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
  JOIN pg_sequence q ON q.seqrelid = s.oid
  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
 WHERE s.relnamespace = %(ns)s AND s.relkind = 'S' AND d.classid = 'pg_class'::regclass
   AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'i'
 ORDER BY s.oid
"""

# Keys, uniques, exclusions and checks first (foreign keys need the keys they reference).
_CONSTRAINTS = """
SELECT con.conrelid, con.conname, con.contype = 'f', pg_get_constraintdef(con.oid)
  FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
 WHERE c.relnamespace = %(ns)s AND c.relkind = 'r' AND con.contype IN ('p', 'u', 'x', 'c', 'f')
 ORDER BY con.contype = 'f', con.oid
"""

_INDEXES = """
SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
 WHERE c.relnamespace = %(ns)s AND NOT EXISTS (
       SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid
          AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x'))
 ORDER BY i.indexrelid
"""

_FUNCTIONS = "SELECT pg_get_functiondef(oid) FROM pg_proc WHERE pronamespace = %(ns)s ORDER BY oid"

_TRIGGERS = """
SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = %(ns)s AND NOT t.tgisinternal ORDER BY t.oid
"""


def clone_script(cursor: Any, *, template: str, target: str) -> str:
    """The SQL that creates schema ``target`` as a copy of ``template``, read from the catalog.

    Expects ``search_path`` to be ``pg_catalog`` so that every definition names its schema.
    Raises :class:`TemplateUnusable` if the template holds what the copy does not reproduce.
    """
    rename = _renamer(template, target)
    cursor.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", [template])
    row = cursor.fetchone()
    if row is None:
        raise TemplateUnusable(f"no schema {template}")
    ns = {"ns": row[0]}
    cursor.execute(_UNSUPPORTED, ns)
    reasons = sorted({reason for (reason,) in cursor.fetchall()})
    if reasons:
        more = f"; and {len(reasons) - 5} more" if len(reasons) > 5 else ""
        raise TemplateUnusable("; ".join(reasons[:5]) + more)

    src, dst = _ident(template), _ident(target)
    tables: dict[int, _Table] = {}
    cursor.execute(_TABLES, ns)
    for oid, name, unlogged, options, comment in cursor.fetchall():
        tables[oid] = _Table(name, unlogged, list(options), comment)
    create = [f"CREATE SCHEMA {dst}"]
    cursor.execute(_COLUMNS, ns)
    for relid, column, generated, default in cursor.fetchall():
        table = tables[relid]
        if generated:
            if default is not None and rename(default) != default:
                raise TemplateUnusable(f"generated column {table.name}.{column} uses the schema")
            continue
        table.columns.append(column)
        if default is not None and rename(default) != default:
            # LIKE would keep the default pointing at the template's objects.
            table.actions.append(f"ALTER COLUMN {_ident(column)} SET DEFAULT {rename(default)}")
    for table in tables.values():
        create.append(_create_table(table, src, dst))

    cursor.execute(_FUNCTIONS, ns)
    functions = [rename(definition) for (definition,) in cursor.fetchall()]

    sequences: list[str] = []
    cursor.execute(_IDENTITIES, ns)
    for row in cursor.fetchall():
        relid, column, always, seq, seqtype, start, step, low, high, cache, cycle = row
        tables[relid].actions.insert(
            0,
            f"ALTER COLUMN {_ident(column)} "
            f"ADD GENERATED {'ALWAYS' if always else 'BY DEFAULT'} AS IDENTITY "
            f"(SEQUENCE NAME {dst}.{_ident(seq)} START WITH {start} "
            f"INCREMENT BY {step} MINVALUE {low} MAXVALUE {high} CACHE {cache}"
            f"{' CYCLE' if cycle else ' NO CYCLE'})",
        )
        if seqtype is not None:  # an identity's sequence takes its column's type
            sequences.append(f"ALTER SEQUENCE {dst}.{_ident(seq)} AS {seqtype}")
        # The template's sequences moved only for the migrations' own rows (copied below).
        sequences.append(
            f"SELECT setval({_literal(f'{dst}.{_ident(seq)}')}, s.last_value, s.is_called) "  # noqa: S608
            f"FROM {src}.{_ident(seq)} AS s"
        )

    cursor.execute(_CONSTRAINTS, ns)
    for relid, name, foreign, definition in cursor.fetchall():
        action = f"ADD CONSTRAINT {_ident(name)} {rename(definition)}"
        (tables[relid].foreign if foreign else tables[relid].actions).append(action)
    cursor.execute(_INDEXES, ns)
    indexes = [rename(definition) for (definition,) in cursor.fetchall()]
    cursor.execute(_TRIGGERS, ns)
    triggers = [rename(definition) for (definition,) in cursor.fetchall()]

    # One ALTER TABLE per table for its identity, keys and checks, one for its foreign keys
    # (each ALTER TABLE costs a lock and a rebuild of the table's cache entry).
    keys, foreign_keys, rows, comments = [], [], [], []
    for t in tables.values():
        name = f"{dst}.{_ident(t.name)}"
        if t.actions:
            keys.append(f"ALTER TABLE {name} " + ", ".join(t.actions))
        if t.foreign:
            foreign_keys.append(f"ALTER TABLE {name} " + ", ".join(t.foreign))
        if t.columns:
            cols = ", ".join(_ident(c) for c in t.columns)
            rows.append(
                f"INSERT INTO {name} ({cols}) OVERRIDING SYSTEM VALUE "  # noqa: S608 (catalog names)
                f"SELECT {cols} FROM {src}.{_ident(t.name)}"
            )
        if t.comment is not None:
            comments.append(f"COMMENT ON TABLE {name} IS {_literal(t.comment)}")
    # The rows go in before the triggers: the copy is no event (no NOTIFY, no audit entry).
    statements: Sequence[str] = [
        *create,
        *functions,
        *keys,
        *sequences,
        *rows,
        *indexes,
        *foreign_keys,
        *triggers,
        *comments,
    ]
    return ";\n".join(statements) + ";\n"


def _create_table(table: _Table, src: str, dst: str) -> str:
    # Not INCLUDING INDEXES/CONSTRAINTS/IDENTITY: LIKE would choose the names itself.
    options = ""
    if table.options:
        pairs = (option.split("=", 1) for option in table.options)
        options = " WITH (" + ", ".join(f"{k} = {_literal(v)}" for k, v in pairs) + ")"
    return (
        f"CREATE {'UNLOGGED ' if table.unlogged else ''}TABLE {dst}.{_ident(table.name)} "
        f"(LIKE {src}.{_ident(table.name)} INCLUDING DEFAULTS INCLUDING GENERATED "
        f"INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING COMMENTS){options}"
    )


def _renamer(template: str, target: str) -> Callable[[str], str]:
    # The template's name as a whole identifier, quoted or not, in any definition or body.
    pattern = re.compile(r"(?<![\w$])" + re.escape(template) + r"(?![\w$])")

    def rename(text: str) -> str:
        return pattern.sub(target, text)

    return rename
