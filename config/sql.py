"""Several ORM writes sent to PostgreSQL in one round trip.

Django sends each ``save()`` as its own statement and waits for its answer. On the execution
hot path a handful of INSERTs follow each other inside one transaction; compiled by the ORM
(so every value is prepared exactly as ``save()`` would prepare it, defaults and ``auto_now``
included) and joined into one message, they cost one round trip instead of one each.
Django's psycopg cursors bind parameters client-side, so one ``execute`` may carry several
statements; PostgreSQL runs them in order, each with its own snapshot, and the first error
stops the rest and raises as usual.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import AutoField, BigAutoField, Model, SmallAutoField
from django.db.models.sql import InsertQuery

_AUTO = (AutoField, BigAutoField, SmallAutoField)


def _insert_sql(obj: Model) -> tuple[str, list[Any]]:
    meta = obj._meta
    fields = [
        f
        for f in meta.local_concrete_fields
        # A serial key the database assigns is left out (its value is then not read back).
        if not (f.primary_key and isinstance(f, _AUTO) and getattr(obj, f.attname) is None)
        and not getattr(f, "generated", False)
    ]
    query = InsertQuery(meta.model)
    query.insert_values(fields, [obj])
    [(sql, params)] = query.get_compiler(connection=connection).as_sql()
    return sql, list(params)


def insert_together(*objs: Model) -> None:
    """INSERT ``objs`` (new, unsaved instances) in this order, in one round trip, on the
    current connection and schema. No ``pre_save``/``post_save`` signals are sent, and an
    auto-assigned key is not read back: for rows nobody listens to and whose key is given or
    not needed afterwards."""
    statements = [_insert_sql(obj) for obj in objs]
    sql = ";\n".join(s for s, _ in statements)
    params = [p for _, ps in statements for p in ps]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
