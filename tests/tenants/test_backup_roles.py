"""docs/operations/backup.md's table of roles, tried: with the production grants
(docs/operations/audit.md), the application role runs the retention purge, backups and
exports; restoring and deleting need the owner (they create and drop schemas), and refused
they change nothing."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from tenants.models import Tenant
from tests.conftest import ROOT
from tests.limits.conftest import put_on_plan
from tests.retention.conftest import runs_for, wipe

PASSWORD = "backup-role-test-password"


def _params() -> dict[str, object]:
    db = connection.settings_dict
    params: dict[str, object] = {"dbname": db["NAME"], "autocommit": True}
    params.update({k: v for k, v in (("host", db["HOST"]), ("port", db["PORT"])) if v})
    params.update({"user": db["USER"] or None, "password": db["PASSWORD"] or None})
    return params


@pytest.fixture
def app_role(committed_personas) -> Iterator[str]:
    role = f"cba_app_keep_{uuid.uuid4().hex[:8]}"
    grants = io.StringIO()
    call_command("audit_grants", "--role", role, stdout=grants)
    with psycopg.connect(**_params()) as owner:
        owner.execute(
            f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}' NOSUPERUSER NOCREATEDB NOCREATEROLE"
        )
        try:
            owner.execute(grants.getvalue())
            yield role
        finally:
            owner.execute(f"DROP OWNED BY {role}")
            owner.execute(f"DROP ROLE {role}")


def as_role(role: str, *args: str) -> subprocess.CompletedProcess[str]:
    db = connection.settings_dict
    if not db["HOST"] or db["HOST"].startswith("/"):
        pytest.skip("needs a TCP database server with password logins")
    url = f"postgres://{role}:{PASSWORD}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", "DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_application_role_purges_and_backs_up_but_cannot_drop_a_tenant(
    app_role, committed_personas, tmp_path: Path
):
    alpha = committed_personas["alpha"]
    plan = put_on_plan(alpha, retention_days=30)
    runs = runs_for(alpha)
    try:
        runs.make(days_old=40, idempotency_key="role-old")
        fresh = runs.make(days_old=1)

        purged = as_role(app_role, "purge_expired", "--tenant", "alpha")
        assert purged.returncode == 0, purged.stderr[-2000:]
        assert runs.ids() == {fresh}

        file = tmp_path / "alpha.cbbackup"
        backed_up = as_role(app_role, "tenant_backup", "alpha", "--output", str(file))
        assert backed_up.returncode == 0, backed_up.stderr[-2000:]
        exported = as_role(app_role, "tenant_export", "alpha", "--output", str(tmp_path / "x"))
        assert exported.returncode == 0, exported.stderr[-2000:]

        refused = as_role(app_role, "tenant_delete", "alpha", "--confirm", "alpha")
        assert refused.returncode != 0 and "must be owner" in refused.stderr
        replaced = as_role(app_role, "tenant_restore", str(file), "--tenant", "alpha", "--replace")
        assert replaced.returncode != 0 and "must be owner" in replaced.stderr
        # Nothing of it happened.
        assert Tenant.objects.filter(slug="alpha").exists()
        assert runs.ids() == {fresh}
    finally:
        wipe(alpha)
        Tenant.objects.filter(pk=alpha.tenant.pk).update(plan=None)
        plan.delete()
