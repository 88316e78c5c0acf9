"""The production grants of docs/operations/audit.md, applied to a role made for the test:
the application's role appends and reads audit entries, and nothing else it may do touches
them (UPDATE, DELETE, TRUNCATE, disabling triggers, replica mode: all refused)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from psycopg import errors

from tenants.audit.grants import GRANTS
from tests.audit.conftest import run_command

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations" / "audit.md"


def _params(user: str | None = None) -> dict[str, object]:
    db = connection.settings_dict
    params: dict[str, object] = {"dbname": db["NAME"], "autocommit": True}
    params.update({k: v for k, v in (("host", db["HOST"]), ("port", db["PORT"])) if v})
    if user is None:
        params.update({"user": db["USER"] or None, "password": db["PASSWORD"] or None})
    else:
        params.update({"user": user, "password": "app-role-test-password"})
    return params


@pytest.fixture
def app_role(committed_personas) -> Iterator[str]:
    """A login role with nothing but the doc's grants (applied by the owner, committed)."""
    role = f"cba_app_test_{uuid.uuid4().hex[:8]}"
    out = io.StringIO()
    call_command("audit_grants", "--role", role, stdout=out)
    with psycopg.connect(**_params()) as owner:
        owner.execute(
            f"CREATE ROLE {role} LOGIN PASSWORD 'app-role-test-password' "
            "NOSUPERUSER NOCREATEDB NOCREATEROLE"
        )
        try:
            owner.execute(out.getvalue())
            yield role
        finally:
            owner.execute(f"DROP OWNED BY {role}")
            owner.execute(f"DROP ROLE {role}")


def test_the_doc_quotes_the_grants_the_command_prints():
    assert GRANTS in DOC.read_text(encoding="utf-8")


def test_the_application_role_appends_and_reads_but_cannot_change_the_log(
    app_role, committed_personas
):
    alpha = committed_personas["alpha"]
    log = f'"{alpha.schema}".audit_auditlog'
    platform_log = "public.tenants_platformauditlog"
    with psycopg.connect(**_params(app_role)) as app:
        for table in (log, platform_log):
            app.execute(
                f"INSERT INTO {table} (created_at, actor, action, outcome, target_type, "
                "target_id, request_id, details) VALUES "
                "(now(), 'user:app', 'grants.append', 'success', '', '', '', '{}')"
            )
            count = app.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert count is not None and count[0] >= 1
            refused = [
                f"UPDATE {table} SET actor = 'x'",
                f"DELETE FROM {table}",
                f"TRUNCATE {table}",
                f"ALTER TABLE {table} DISABLE TRIGGER ALL",
                "SET session_replication_role = replica",
            ]
            for statement in refused:
                with pytest.raises(errors.InsufficientPrivilege):
                    app.execute(statement)
        # Ordinary tables stay the application's to write.
        app.execute(f'UPDATE "{alpha.schema}".agents_agent SET name = name WHERE false')
    # The entries it appended are chained like any other.
    assert run_command("audit_verify", "--tenant", alpha.slug, "--platform").status == 0
