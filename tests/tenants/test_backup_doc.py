"""docs/operations/backup.md, executed: its shell blocks run in order, as written, against the
test database (retention, backup, delete, restore, verify, replace, export, delete)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tenants.erasure import tenant_delete
from tenants.models import Tenant
from tests.conftest import ROOT
from tests.docs.pages import blocks, run_page

DOC = ROOT / "docs/operations/backup.md"


@pytest.mark.django_db(transaction=True)
def test_the_backup_page_runs_as_written(tmp_path: Path) -> None:
    scripts, _ = blocks(DOC.read_text())
    assert len(scripts) == 7
    tenant = f"doc-{uuid.uuid4().hex[:8]}"
    try:
        done = run_page(scripts, tmp_path, timeout=240, TENANT=tenant)
        out = done.stdout
        assert f"{tenant}: would purge 0 execution(s)" in out
        assert f"{tenant}: created and restored" in out
        assert f"ok      tenant {tenant}:" in out
        assert f"{tenant}: restored" in out
        assert f"{tenant}: deleted (schema" in out
        first_key = json.loads((tmp_path / "tenant.json").read_text())["api_key"]
        export = (tmp_path / f"{tenant}-export.jsonl").read_text()
        assert '"type": "audit.auditlog"' in export and first_key not in export
        assert not Tenant.objects.filter(slug=tenant).exists()
    finally:
        left = Tenant.objects.filter(slug=tenant).first()
        if left is not None:
            tenant_delete(tenant=left, confirm=tenant, actor="tests")
