"""The tenants of the M7 phase (bench/m7.py), run in a subprocess with Django configured.

``--upto N``: create tenants ``m7-00001``, ... through the real ``tenants.services.tenant_create``
(the path an operator's ``create_tenant`` takes) until the database has N tenants, timing each
creation. ``--cleanup``: delete every ``m7-`` tenant again (``tenants.erasure.tenant_delete``:
its schema and every public row), so that the next run's "10 tenants" are 10 again. Prints one
JSON object: the seconds of each creation, whether the template schema was current (creations
copied it rather than migrating) and the counts of tenants and tenant schemas afterwards.

Usage: ``python bench/m7_tenants.py --upto N`` or ``--cleanup``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

from tenants.erasure import tenant_delete  # noqa: E402
from tenants.models import Tenant  # noqa: E402
from tenants.schema_template import template_is_current, template_schema_name  # noqa: E402
from tenants.services import tenant_create  # noqa: E402

PREFIX = "m7-"
ACTOR = "bench:m7"


def counts() -> dict[str, int]:
    with schema_context("public"):
        tenants = Tenant.objects.exclude(schema_name="public").count()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%%' "
                "AND nspname NOT IN ('information_schema', 'public', %s)",
                [template_schema_name()],
            )
            schemas = cursor.fetchone()[0]
    return {"tenants": tenants, "tenant_schemas": schemas}


def populate(upto: int) -> dict[str, object]:
    seconds: list[float] = []
    with schema_context("public"):
        have = Tenant.objects.exclude(schema_name="public").count()
        taken = set(Tenant.objects.filter(slug__startswith=PREFIX).values_list("slug", flat=True))
    # Whether the template was usable when the run began: creations were copies, not migrations.
    copied = bool(template_schema_name()) and template_is_current(template_schema_name())
    index = 0
    while have < upto:
        index += 1
        slug = f"{PREFIX}{index:05d}"
        if slug in taken:
            continue
        t0 = time.perf_counter()
        with redirect_stdout(io.StringIO()):  # a migrating fallback would print its progress
            tenant_create(slug=slug, name=slug, domain=f"{slug}.localhost", actor=ACTOR)
        seconds.append(time.perf_counter() - t0)
        have += 1
    return {"created": len(seconds), "seconds": seconds, "template_current": copied, **counts()}


def cleanup() -> dict[str, object]:
    with schema_context("public"):
        doomed = list(Tenant.objects.filter(slug__startswith=PREFIX))
    for tenant in doomed:  # the operators' deletion: schema and every public row
        tenant_delete(tenant=tenant, confirm=tenant.slug, actor=ACTOR)
    return {"dropped": len(doomed), **counts()}


def main() -> None:
    parser = argparse.ArgumentParser()
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--upto", type=int)
    group.add_argument("--cleanup", action="store_true")
    args = parser.parse_args()
    out = cleanup() if args.cleanup else populate(args.upto)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
