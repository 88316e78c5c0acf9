"""The M7 phase (bench/m7.py) end to end at a tiny N, so that it cannot rot: on a database of
its own (migrated through the project's migrate_schemas, so with the tenant template), with its
own fake LLM and daphne, tenants created through ``tenant_create`` from 3 up to 6, M1 measured
at both counts, the created tenants dropped again; and its report rows render."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # bench/ is scripts with flat imports, not a package

from m7 import m7_target_rows, render_m7  # noqa: E402


def _admin(settings_dict: dict[str, Any]) -> psycopg.Connection[Any]:
    return psycopg.connect(
        dbname="postgres",
        host=settings_dict["HOST"] or None,
        port=settings_dict["PORT"] or None,
        user=settings_dict["USER"] or None,
        password=settings_dict["PASSWORD"] or None,
        autocommit=True,
    )


@pytest.fixture
def m7_database(django_db_setup: None) -> Iterator[str]:
    """A database of the test's own (the phase commits tenants; the test database's other
    tests must not see them), dropped afterwards."""
    from django.db import connection

    settings_dict = connection.settings_dict
    name = f"{settings_dict['NAME']}_m7"
    with _admin(settings_dict) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with _admin(settings_dict) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_the_phase_runs_from_3_to_6_tenants_and_leaves_none_behind(
    m7_database: str, tmp_path: Path
) -> None:
    from django.db import connection

    db = connection.settings_dict
    env = {**os.environ, "BENCH_DATABASE_NAME": m7_database}
    if db["HOST"] and not str(db["HOST"]).startswith("/"):
        env["BENCH_DATABASE_URL"] = (
            f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT'] or 5432}"
            f"/{m7_database}"
        )
    out = tmp_path / "m7.json"
    done = subprocess.run(
        [
            sys.executable,
            "bench/m7.py",
            *("--n", "6", "--base", "3", "--quick", "--pairs", "10", "--rounds", "1"),
            *("--out", str(out)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    res = json.loads(out.read_text())
    assert res["tenants_low"] == 3 and res["tenants_high"] == 6
    # The bench tenant is one of the 3; the phase made the other 5 and dropped them.
    assert res["creation_seconds"]["n"] == 5 and res["dropped_after"] == 5
    assert res["template_current"]  # migrate_schemas built the template: creations copied it
    for side in ("m1_low", "m1_high"):
        assert res[side]["pairs"] == 10 and res[side]["errors"] == 0
    assert res["m1_p50_move"] is not None
    rows = m7_target_rows({"m7": res})
    assert len(rows) == 2 and all(row.startswith("| M7 |") for row in rows)
    assert any("| 6 (6) |" in line for line in render_m7({"m7": res}))
