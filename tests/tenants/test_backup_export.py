"""The GDPR-style export: everything held for the tenant, for the tenant; never a secret."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django_tenants.utils import schema_context

from agents.models import Agent, ProviderCredential
from agents.services.agents import agent_update
from tenants.models import ApiKey, PlatformAuditLog
from tenants.services import tenant_create
from tests.tenants.test_backup import PROVIDER_KEY, populate


def test_the_export_holds_the_tenants_data_and_no_secret(db, settings, tmp_path):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    created = tenant_create(slug="export-me", name="Export Me", domain="export-me.localhost")
    tenant = created.tenant
    populate(tenant)
    with schema_context(tenant.schema_name):
        agent_tools = [
            {
                "type": "http",
                "name": "lookup",
                "config": {
                    "url": "https://api.example.test/x",
                    "headers": {"X-Token": "tool-secret-1"},
                },
            }
        ]
        agent_update(
            agent=Agent.objects.get(slug="writer"),
            changes={"tools": agent_tools},
            actor="tests",
            schema_name=tenant.schema_name,
        )
        sealed = ProviderCredential.objects.get().api_key_encrypted
    key = ApiKey.objects.get(tenant=tenant)
    file = tmp_path / "export.jsonl"

    out = io.StringIO()
    call_command("tenant_export", "export-me", "--output", str(file), stdout=out)

    assert file.stat().st_mode & 0o777 == 0o600
    text = file.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["type"] == "export" and lines[0]["version"] == 1
    kinds: dict[str, list[dict[str, Any]]] = {}
    for line in lines[1:]:
        kinds.setdefault(line["type"], []).append(line["data"])
    # The tenant's own data, all of it.
    assert kinds["tenant"][0]["slug"] == "export-me"
    assert kinds["domain"] == [{"domain": "export-me.localhost", "is_primary": True}]
    assert [(k["id"], k["prefix"]) for k in kinds["api_key"]] == [(str(key.id), key.prefix)]
    assert {a["slug"] for a in kinds["agents.agent"]} == {"writer"}
    assert len(kinds["agents.execution"]) == 2 and len(kinds["agents.executionevent"]) == 4
    assert len(kinds["audit.auditlog"]) >= 4
    assert {u["username"] for u in kinds["auth.user"]} == {"admin", "ops"}
    assert kinds["workflow_bridge.resource"][0]["data"] == {"a": 1, "b": 2}
    assert "auth.user_groups" in {line["type"] for line in lines[1:]}
    # No secret, in any form: provider key (clear or sealed), MCP and tool headers, the API
    # key (its secret, its hash: the prefix is its public name), operators' password hashes.
    for secret in (
        PROVIDER_KEY,
        sealed,
        "mcp-secret",
        "tool-secret-1",
        created.api_key,
        key.key_hash,
        "pbkdf2_sha256",
    ):
        assert secret not in text
    credential = kinds["agents.providercredential"][0]
    assert credential["api_key_encrypted"] == "[redacted]"
    assert kinds["agents.mcpserver"][0]["auth_header_encrypted"] == "[redacted]"
    assert all(u["password"] == "[redacted]" for u in kinds["auth.user"])
    tools = kinds["agents.agent"][0]["tools"]
    assert tools[0]["config"]["headers"] == {"X-Token": "********"}
    assert f"{sum(1 for _ in lines[1:])} row(s) exported" in out.getvalue()
    entry = PlatformAuditLog.objects.get(action="tenant.export", target_id="export-me")
    assert entry.actor == "command:tenant_export" and entry.details["file"] == file.name


def test_export_of_an_unknown_tenant_is_refused(db, tmp_path):
    with pytest.raises(CommandError, match="no tenant 'nobody'"):
        call_command("tenant_export", "nobody", "--output", str(tmp_path / "x"))


def test_export_outside_a_transaction_reads_one_snapshot(committed_personas, tmp_path):
    file = tmp_path / "alpha.jsonl"
    call_command("tenant_export", "alpha", "--output", str(file), stdout=io.StringIO())
    kinds = [json.loads(line)["type"] for line in file.read_text().splitlines()]
    assert kinds[:2] == ["export", "tenant"] and "audit.auditlog" in kinds
