"""What is audited, through each interface: execution starts (every mode) and cancels, keys
and tokens, refused permissions, the tenant's users and groups, and every admin write, each in
its tenant's log (never the other tenant's) or in the platform log."""

from __future__ import annotations

import asyncio

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django_tenants.utils import schema_context

from agents.models import Execution
from tenants.audit.models import AuditLog
from tenants.models import PlatformAuditLog
from tenants.tokens import verify_token
from tests.agents.conftest import make_agent, make_credential
from tests.agents.test_admin import PASSWORD, client_for, make_operator, read_form
from tests.mcp.conftest import MODES, mcp_client
from tests.ws.conftest import (
    WsEnv,
    authed,
    recv,
    send,
    terminal_of,
    until,
)


def entries(schema: str, **filters: object) -> list[AuditLog]:
    with schema_context(schema):
        return list(AuditLog.objects.filter(**filters).order_by("id"))


def actor_of(client) -> str:
    return client.get("/auth/whoami").json()["principal"]


def test_every_rest_execution_start_is_audited_with_its_mode(alpha, bravo, api):
    with schema_context(alpha.schema):
        agent = make_agent(make_credential(kind="echo"), alpha.schema)
    client = api(alpha.user_key)
    actor = actor_of(client)
    blocking = client.post(
        f"/agents/{agent.id}/execute",
        {"input": {"message": "hi"}},
        headers={"X-Request-ID": "req-audit-1"},
    )
    assert blocking.status_code == 200, blocking.content
    background = client.post(
        f"/agents/{agent.id}/execute",
        {"input": {"message": "later"}, "execution_config": {"mode": "background"}},
    )
    assert background.status_code == 202, background.content
    started = {e.target_id: e for e in entries(alpha.schema, action="execution.start")}
    first = started[blocking.json()["execution_id"]]
    assert first.actor == actor and first.target_type == "execution"
    assert first.request_id == "req-audit-1"
    assert first.details == {"agent": str(agent.id), "mode": "blocking"}
    assert started[background.json()["execution_id"]].details["mode"] == "background"
    # One entry per execution, none in the other tenant's log.
    with schema_context(alpha.schema):
        mine = set(Execution.objects.values_list("id", flat=True))
    every = [e.target_id for e in entries(alpha.schema, action="execution.start")]
    assert sorted(t for t in every if t in mine) == sorted(mine)
    assert not entries(bravo.schema, target_id=blocking.json()["execution_id"])


def test_a_refused_run_stores_neither_an_execution_nor_an_entry(alpha, api):
    with schema_context(alpha.schema):
        agent = make_agent(make_credential(kind="echo"), alpha.schema, enabled=False)
    before = len(entries(alpha.schema, action="execution.start"))
    refused = api(alpha.user_key).post(f"/agents/{agent.id}/execute", {"input": {"message": "x"}})
    assert refused.status_code == 400
    assert len(entries(alpha.schema, action="execution.start")) == before


def test_cancel_is_audited(alpha, api):
    with schema_context(alpha.schema):
        agent = make_agent(make_credential(kind="echo"), alpha.schema)
    client = api(alpha.user_key)
    queued = client.post(
        f"/agents/{agent.id}/execute",
        {"input": {"message": "later"}, "execution_config": {"mode": "background"}},
    ).json()["execution_id"]
    assert client.post(f"/executions/{queued}/cancel").status_code == 200
    (cancel,) = entries(alpha.schema, action="execution.cancel", target_id=queued)
    assert cancel.actor == actor_of(client)


def test_token_issue_and_key_lifecycle_are_audited(alpha, bravo, api):
    admin = api(alpha.admin_key)
    issued = admin.post("/auth/token", {"role": "readonly", "ttl_seconds": 120})
    assert issued.status_code == 201, issued.content
    token = issued.json()["access_token"]
    jti = verify_token(token)["jti"]
    (entry,) = entries(alpha.schema, action="token.issue", target_id=jti)
    assert entry.details["role"] == "readonly" and entry.target_type == "token"
    assert entry.actor == actor_of(admin)
    assert token not in str(entry.details) and token not in entry.target_id
    created = admin.post("/api-keys", {"name": "ci", "role": "user"})
    assert created.status_code == 201, created.content
    key_id = created.json()["id"]
    assert admin.delete(f"/api-keys/{key_id}").status_code == 200
    actions = [e.action for e in entries(alpha.schema, target_id=key_id)]
    assert actions == ["api_key.create", "api_key.revoke"]
    assert not entries(bravo.schema, target_id=key_id)


def test_a_readonly_key_calling_a_write_is_403_and_audited(alpha, api):
    client = api(alpha.readonly_key)
    refused = client.post("/agents", {"slug": "nope", "name": "Nope"})
    assert refused.status_code == 403
    denial = entries(alpha.schema, action="permission.denied")[-1]
    assert denial.outcome == "denied" and denial.actor == actor_of(client)
    assert denial.details["permission"] == "agents.write"
    assert denial.details["method"] == "POST" and denial.details["path"] == "/agents"


def test_tenant_admin_user_group_and_permission_changes_are_in_the_tenant_log(alpha, bravo):
    operator = make_operator(alpha.schema, "auditor-op")
    browser = client_for(operator, alpha.schema, alpha.host)
    with schema_context(alpha.schema):
        group = Group.objects.create(name="reviewers")
        permission = Permission.objects.get(codename="view_agent")
    added = browser.post(
        "/admin/auth/user/add/",
        {
            "username": "newbie",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "usable_password": "true",
        },
    )
    assert added.status_code == 302, added.content.decode()[:3000]
    with schema_context(alpha.schema):
        newbie = get_user_model().objects.get(username="newbie")
    page = browser.get(f"/admin/auth/user/{newbie.pk}/change/")
    form = read_form(page, "user_form")
    form["groups"] = [str(group.pk)]
    form["user_permissions"] = [str(permission.pk)]
    changed = browser.post(f"/admin/auth/user/{newbie.pk}/change/", form)
    assert changed.status_code == 302, changed.content.decode()[:3000]
    log = entries(alpha.schema, target_id=str(newbie.pk))
    by_action = {e.action: e for e in log}
    assert by_action["user.create"].actor == "user:auditor-op"
    assert by_action["user.groups.add"].details["groups"] == ["reviewers"]
    assert by_action["user.permissions.add"].details["permissions"] == ["agents.view_agent"]
    assert by_action["admin.add"].target_type == "auth.user"
    assert by_action["admin.change"].actor == "user:auditor-op"
    assert by_action["admin.change"].ip_address == "127.0.0.1"
    assert not entries(bravo.schema, action__startswith="user.", details__name="newbie")
    with schema_context("public"):
        assert not PlatformAuditLog.objects.filter(details__name="newbie").exists()


def test_platform_admin_writes_are_in_the_platform_log(personas, db):
    with schema_context("public"):
        root = get_user_model().objects.create_superuser("root-audit", "r@example.com", PASSWORD)
        mark = PlatformAuditLog.objects.order_by("-id").values_list("id", flat=True).first() or 0
    browser = client_for(root, "public", "localhost")
    created = browser.post(
        "/admin/tenants/plan/add/",
        {
            "slug": "audited-plan",
            "name": "Audited",
            "budget_period": "month",
            "budget_warning_percent": "80",
            "allowed_models": "[]",
            "allowed_providers": "[]",
        },
    )
    assert created.status_code == 302, created.content.decode()[:2000]
    with schema_context("public"):
        (entry,) = PlatformAuditLog.objects.filter(id__gt=mark, action="admin.add")
    assert entry.actor == "user:root-audit" and entry.target_type == "tenants.plan"
    assert "udited" in entry.details["object"]


# ---- the other interfaces, against the live server ----


async def test_a_run_over_websocket_is_audited(ws: WsEnv, fake_llm) -> None:
    agent = await ws.make_agent(ws.alpha)
    fake_llm.script(agent.llm_key, {"reply": "ok"})
    async with ws.connect() as conn:
        await authed(conn, ws.alpha.user_key)
        await send(
            conn,
            {
                "type": "execute",
                "agent_id": agent.agent_id,
                "input": {"message": "hi"},
                "request_id": "ws-audit",
            },
        )
        first = await recv(conn)
        assert first["type"] == "execution_started"
        await until(conn, terminal_of(first["execution_id"]))

    def stored() -> list[AuditLog]:
        return entries(ws.alpha.schema, action="execution.start", target_id=first["execution_id"])

    (entry,) = await asyncio.to_thread(stored)
    assert entry.details["mode"] == "streamed" and entry.request_id == "ws-audit"
    assert entry.actor.startswith("api_key:")


def test_a_run_over_mcp_is_audited(live_server_url, live_agent):
    persona = live_agent.persona

    async def main():
        async with mcp_client(live_server_url.url, persona.user_key, mode=MODES[0]) as client:
            return await client.call_tool(live_agent.agent.slug, {"message": "hello"})

    result = asyncio.run(main())
    assert not result.is_error, result
    with schema_context(persona.schema):
        execution = Execution.objects.latest("created_at")
    (entry,) = entries(persona.schema, action="execution.start", target_id=execution.pk)
    assert entry.actor.startswith("api_key:")
