"""New tenants' schemas are copies of the template schema (``tenants.schema_template``): the
copy is the migrated schema, object for object, read through the catalog modulo the schema's
name; a template that is missing or behind the migrations is not copied (creation migrates);
``migrate_schemas`` rebuilds it; it is no tenant anywhere."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django_tenants.utils import schema_context

from agents.core import queue
from tenants.models import Tenant
from tenants.schema_template import (
    schema_clone,
    template_build,
    template_is_current,
    template_schema_name,
)
from tenants.services import tenant_create

pytestmark = pytest.mark.django_db

TEMPLATE = template_schema_name()

# (label, query): each returns rows describing one kind of object of schema %(s)s.
CATALOG = [
    (
        "tables",
        """SELECT c.relname, c.relkind, c.relpersistence, c.reloptions,
                  obj_description(c.oid, 'pg_class')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %(s)s AND c.relkind <> 'i'""",
    ),
    (
        "columns",
        """SELECT c.relname, row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
                  a.attgenerated, pg_get_expr(d.adbin, d.adrelid), co.collname,
                  col_description(c.oid, a.attnum)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             LEFT JOIN pg_collation co ON co.oid = a.attcollation
            WHERE n.nspname = %(s)s AND a.attnum > 0 AND NOT a.attisdropped
              AND c.relkind IN ('r', 'p')""",
    ),
    (
        "sequences",
        """SELECT c.relname, format_type(q.seqtypid, NULL), q.seqstart, q.seqincrement,
                  q.seqmin, q.seqmax, q.seqcache, q.seqcycle, t.relname, a.attname, d.deptype
             FROM pg_sequence q JOIN pg_class c ON c.oid = q.seqrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.refclassid = 'pg_class'::regclass
             LEFT JOIN pg_class t ON t.oid = d.refobjid
             LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
            WHERE n.nspname = %(s)s""",
    ),
    (
        "indexes",
        """SELECT c.relname, t.relname, pg_get_indexdef(c.oid), i.indisunique, i.indisprimary,
                  i.indisvalid, i.indisclustered
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_class t ON t.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(s)s""",
    ),
    (
        "constraints",
        """SELECT con.conname, t.relname, con.contype, pg_get_constraintdef(con.oid),
                  con.condeferrable, con.condeferred, con.convalidated, ft.relname,
                  fn.nspname = %(s)s, ic.relname
             FROM pg_constraint con JOIN pg_class t ON t.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = con.connamespace
             LEFT JOIN pg_class ft ON ft.oid = con.confrelid
             LEFT JOIN pg_namespace fn ON fn.oid = ft.relnamespace
             LEFT JOIN pg_class ic ON ic.oid = con.conindid
            WHERE n.nspname = %(s)s""",
    ),
    (
        "triggers",
        # The foreign keys' own triggers are named after their oids.
        """SELECT regexp_replace(t.tgname, '_[0-9]+$', ''), c.relname,
                  regexp_replace(pg_get_triggerdef(t.oid), '_[0-9]+"', '"'),
                  t.tgenabled, t.tgisinternal
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(s)s""",
    ),
    (
        "functions",
        """SELECT p.proname, pg_get_function_identity_arguments(p.oid), p.prokind,
                  pg_get_functiondef(p.oid), obj_description(p.oid, 'pg_proc')
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = %(s)s""",
    ),
    (
        "types",
        """SELECT t.typname, t.typtype, t.typrelid <> 0
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = %(s)s""",
    ),
    (
        "members",  # anything else that lives in the schema (operators, collations, ...)
        """SELECT classid::regclass::text, count(*) FROM pg_depend
            WHERE refclassid = 'pg_namespace'::regclass AND refobjid = %(s)s::regnamespace
            GROUP BY 1""",
    ),
]


def catalog(schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every object of ``schema`` as sorted rows, its name replaced by ``<schema>``."""
    name = re.compile(r"(?<![\w$])" + re.escape(schema) + r"(?![\w$])")

    def plain(value: Any) -> Any:
        return name.sub("<schema>", value) if isinstance(value, str) else value

    found: dict[str, list[tuple[Any, ...]]] = {}
    with connection.cursor() as cursor:
        # Definitions name every schema, public included.
        cursor.execute("SELECT set_config('search_path', 'pg_catalog', true)")
        for label, query in CATALOG:
            cursor.execute(query, {"s": schema})
            found[label] = sorted(
                (tuple(plain(v) for v in row) for row in cursor.fetchall()), key=repr
            )
        cursor.execute("SELECT set_config('search_path', 'public', true)")
    return found


def contents(schema: str) -> dict[str, Any]:
    """Every table's rows (and every sequence's state) of a schema nobody has written to."""
    found: dict[str, Any] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'S')",
            [schema],
        )
        for relname, kind in cursor.fetchall():
            if kind == "S":
                cursor.execute(f'SELECT last_value, is_called FROM "{schema}"."{relname}"')
                found[relname] = cursor.fetchone()
            elif relname == "django_migrations":
                # When it was applied is the only column that may differ.
                cursor.execute(f'SELECT id, app, name FROM "{schema}"."{relname}" ORDER BY id')
                found[relname] = cursor.fetchall()
            else:
                cursor.execute(f'SELECT * FROM "{schema}"."{relname}" ORDER BY 1')
                found[relname] = cursor.fetchall()
    return found


def migrated_schema(schema: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema}"')
    call_command("migrate_schemas", schema_name=schema, interactive=False, verbosity=0)


@pytest.fixture(scope="module", autouse=True)
def _current_template(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The test database was migrated through our ``migrate`` (so it has the template);
    built here too in case it was not (a reused database)."""
    with django_db_blocker.unblock():
        template_build()
        assert template_is_current(TEMPLATE)
    yield


def test_a_copy_is_the_migrated_schema_object_for_object() -> None:
    with transaction.atomic():
        assert schema_clone(schema_name="t_cmp_copy")
        migrated_schema("t_cmp_migrated")
        copy, migrated = catalog("t_cmp_copy"), catalog("t_cmp_migrated")
        assert {label: len(rows) for label, rows in copy.items()} == {
            label: len(rows) for label, rows in migrated.items()
        }
        for label, _query in CATALOG:
            assert copy[label] == migrated[label], label
        # Every foreign key points into the copy itself (today none points to public).
        assert all(row[8] for row in copy["constraints"] if row[2] == "f")
        assert all("tenant_template" not in repr(row) for rows in copy.values() for row in rows)
        copied, fresh = contents("t_cmp_copy"), contents("t_cmp_migrated")
        assert copied == fresh
        # Only the migrations write into a new schema: the rows are theirs and no sequence
        # of another table has moved.
        assert {name for name, rows in copied.items() if isinstance(rows, list) and rows} == {
            "django_migrations",
            "django_content_type",
            "auth_permission",
        }
        moved = {name for name, state in copied.items() if isinstance(state, tuple) and state[1]}
        assert moved == {
            "django_migrations_id_seq",
            "django_content_type_id_seq",
            "auth_permission_id_seq",
        }
        transaction.set_rollback(True)


def test_a_foreign_key_to_a_public_table_stays_on_that_table() -> None:
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f'ALTER TABLE "{TEMPLATE}".auth_group ADD COLUMN plan_id bigint '
                "CONSTRAINT auth_group_plan_fk REFERENCES public.tenants_plan (id)"
            )
        assert schema_clone(schema_name="t_fk_public")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT confrelid::regclass::text FROM pg_constraint "
                "WHERE conname = 'auth_group_plan_fk' AND connamespace = 't_fk_public'::regnamespace"
            )
            assert cursor.fetchone() == ("tenants_plan",)  # public is on the search path
        transaction.set_rollback(True)


def test_a_copied_tenant_works_and_its_triggers_fire_for_itself() -> None:
    with transaction.atomic():
        created = tenant_create(slug="copied-co", name="Copied", domain="copied-co.localhost")
        schema = created.tenant.schema_name
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT max(id) FROM "{schema}".auth_user')
            assert cursor.fetchone()[0] == 1  # ids start fresh, not after the template's
            # The audit chain's trigger is the copy's own: the first entry chains from ''.
            cursor.execute(
                f'SELECT prev_hash, entry_hash FROM "{schema}".audit_auditlog ORDER BY id'
            )
            entries = cursor.fetchall()
            assert entries and entries[0][0] == ""
            assert all(later[0] == earlier[1] for earlier, later in itertools.pairwise(entries))
            cursor.execute(f'SELECT count(*) FROM "{TEMPLATE}".audit_auditlog')
            assert cursor.fetchone()[0] == 0
            cursor.execute(f'SELECT count(*) FROM "{TEMPLATE}".auth_user')
            assert cursor.fetchone()[0] == 0
        with schema_context(schema):
            from django.contrib.auth import get_user_model

            assert (
                get_user_model()
                .objects.get(username="admin")
                .check_password(created.admin_password)
            )
        transaction.set_rollback(True)


def test_a_template_behind_the_migrations_is_not_copied() -> None:
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f'DELETE FROM "{TEMPLATE}".django_migrations WHERE id = '
                f'(SELECT max(id) FROM "{TEMPLATE}".django_migrations)'
            )
        assert not template_is_current(TEMPLATE)
        assert not schema_clone(schema_name="t_not_copied")
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = 't_not_copied'")
            assert cursor.fetchone() is None
        # Creation migrates instead: the schema has every migration.
        created = tenant_create(slug="migrated-co", name="Migrated", domain="migrated.localhost")
        assert template_is_current(created.tenant.schema_name)
        # And migrate_schemas brings the template back up to date.
        assert template_build()
        assert template_is_current(TEMPLATE)
        transaction.set_rollback(True)


def test_a_missing_template_means_migrating(settings: Any) -> None:
    settings.TENANT_TEMPLATE_SCHEMA = "no_such_template"
    with transaction.atomic():
        assert not schema_clone(schema_name="t_no_template")
        created = tenant_create(slug="no-template", name="No", domain="no-template.localhost")
        assert template_is_current(created.tenant.schema_name)
        transaction.set_rollback(True)


def test_a_template_with_an_object_the_copy_cannot_make_is_not_copied() -> None:
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE VIEW "{TEMPLATE}".a_view AS SELECT 1 AS one')
        assert not schema_clone(schema_name="t_view_refused")
        transaction.set_rollback(True)


def test_an_up_to_date_template_is_left_alone() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", [TEMPLATE])
        before = cursor.fetchone()
    assert not template_build()
    call_command("migrate_schemas", interactive=False, verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", [TEMPLATE])
        assert cursor.fetchone() == before


def test_the_template_is_no_tenant() -> None:
    with schema_context("public"):
        assert not Tenant.objects.filter(schema_name=TEMPLATE).exists()
    assert TEMPLATE not in queue.tenant_schemas()
    assert not TEMPLATE.startswith("t_")
