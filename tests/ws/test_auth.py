"""Authenticating an agents WebSocket: by message, handshake header or query; failures close
with 4401; tenant and principal are fixed for the connection (reliability cases 5, 6, 9)."""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django_tenants.utils import schema_context
from websockets.exceptions import InvalidStatus

from tenants.audit.models import AuditLog
from tests.ws.conftest import WsEnv, authed, closed_code, recv, send


async def test_auth_message_with_an_api_key(ws: WsEnv) -> None:
    async with ws.connect() as conn:
        reply = await authed(conn, ws.alpha.user_key)
        assert reply == {"type": "auth_success", "tenant_id": "alpha", "role": "user"}
        await send(conn, {"type": "ping"})
        assert (await recv(conn))["type"] == "pong"


async def test_auth_message_with_a_tenant_jwt(ws: WsEnv) -> None:
    async with httpx.AsyncClient(base_url=ws.server.url) as client:
        issued = await client.post(
            "/auth/token",
            json={"role": "readonly"},
            headers={"Authorization": f"Bearer {ws.bravo.user_key}"},
        )
    token = issued.json()["access_token"]
    async with ws.connect() as conn:
        reply = await authed(conn, token)
        assert reply == {"type": "auth_success", "tenant_id": "bravo", "role": "readonly"}


async def test_handshake_header_and_query_credentials(ws: WsEnv) -> None:
    async with ws.connect(
        additional_headers={"Authorization": f"Bearer {ws.alpha.admin_key}"}
    ) as conn:
        assert (await recv(conn))["role"] == "admin"
    async with ws.connect(query=f"token={ws.bravo.readonly_key}") as conn:
        assert await recv(conn) == {
            "type": "auth_success",
            "tenant_id": "bravo",
            "role": "readonly",
        }


async def test_bad_credential_gets_auth_failure_and_close_4401(ws: WsEnv) -> None:
    async with ws.connect() as conn:
        await send(conn, {"type": "auth", "token": "cbk_notakey_000000000000000000"})
        assert (await recv(conn))["type"] == "auth_failure"
        assert await closed_code(conn) == 4401
    async with ws.connect(query="token=garbage") as conn:
        assert (await recv(conn))["type"] == "auth_failure"
        assert await closed_code(conn) == 4401


async def test_any_message_before_auth_is_refused(ws: WsEnv) -> None:
    async with ws.connect() as conn:
        await send(conn, {"type": "ping"})
        reply = await recv(conn)
        assert reply["type"] == "auth_failure" and "auth" in reply["error"]
        assert await closed_code(conn) == 4401
    async with ws.connect() as conn:
        await conn.send("not json")
        assert (await recv(conn))["type"] == "auth_failure"
        assert await closed_code(conn) == 4401


async def test_unknown_host_is_refused_at_the_handshake(ws: WsEnv) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with ws.connect(host="ghost.localhost"):
            pass
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):  # a host outside ALLOWED_HOSTS
        async with ws.connect(host="evil.example"):
            pass
    with pytest.raises(InvalidStatus):  # a browser page from a foreign site
        async with ws.connect(origin="http://evil.example"):
            pass


async def test_credential_of_another_tenant_on_a_tenant_host_is_refused_and_audited(
    ws: WsEnv,
) -> None:
    async with ws.connect(host=ws.alpha.host) as conn:
        await send(conn, {"type": "auth", "token": ws.bravo.user_key})
        reply = await recv(conn)
        assert reply["type"] == "auth_failure" and "host" in reply["error"]
        assert await closed_code(conn) == 4401
    async with ws.connect(host=ws.alpha.host) as conn:  # alpha's own key on alpha's host
        assert (await authed(conn, ws.alpha.user_key))["tenant_id"] == "alpha"

    def audited() -> list[dict]:
        try:
            with schema_context(ws.alpha.schema):
                return list(
                    AuditLog.objects.filter(action="auth.failure").values_list("details", flat=True)
                )
        finally:
            connection.close()  # this worker thread's own connection

    details = await sync_to_async(audited)()
    assert any(
        d.get("reason") == "credential of another tenant" and d.get("transport") == "websocket"
        for d in details
    )


async def test_a_later_auth_cannot_switch_the_tenant(ws: WsEnv) -> None:
    async with ws.connect() as conn:
        await authed(conn, ws.alpha.user_key)
        await send(conn, {"type": "auth", "token": ws.bravo.admin_key})
        reply = await recv(conn)
        assert reply["type"] == "error" and reply["code"] == "already_authenticated"
        await send(conn, {"type": "subscribe", "execution_id": "anything"})
        assert (await recv(conn))["code"] == "not_found"  # still alpha, still authenticated
        await send(conn, {"type": "ping"})
        assert (await recv(conn))["type"] == "pong"


def _new_key(tenant_slug: str, role: str = "user") -> tuple[str, str]:
    from tenants.models import Tenant
    from tenants.services import api_key_create

    try:
        with schema_context("public"):
            tenant = Tenant.objects.get(slug=tenant_slug)
            made = api_key_create(tenant=tenant, role=role, name="short-lived", actor="tests")
        return made.key, str(made.api_key.id)
    finally:
        connection.close()


def _revoke(key_id: str) -> None:
    from tenants.models import ApiKey
    from tenants.services import api_key_revoke

    try:
        with schema_context("public"):
            api_key_revoke(api_key=ApiKey.objects.get(pk=key_id), actor="tests")
    finally:
        connection.close()


async def test_revoking_the_key_closes_its_connections(ws: WsEnv) -> None:
    key, key_id = await sync_to_async(_new_key, thread_sensitive=False)("alpha")
    async with ws.connect() as conn, ws.connect() as other:
        await authed(conn, key)
        await authed(other, ws.alpha.user_key)  # another key of the same tenant
        await sync_to_async(_revoke, thread_sensitive=False)(key_id)
        failure = await recv(conn, timeout=10)
        assert failure == {"type": "auth_failure", "error": failure["error"]}
        assert "revoked" in failure["error"]
        assert await closed_code(conn) == 4401
        await send(other, {"type": "ping"})
        assert (await recv(other))["type"] == "pong"  # untouched


def _tenant_with_key(slug: str) -> str:
    from tests.conftest import ensure_tenant

    try:
        ensure_tenant(slug)
        return _new_key(slug)[0]
    finally:
        connection.close()


def _set_status(slug: str, status: str) -> None:
    from tenants.models import Tenant

    try:
        with schema_context("public"):
            # save(), not update(): the change is announced, as an operator's would be.
            tenant = Tenant.objects.get(slug=slug)
            tenant.status = status
            tenant.save(update_fields=["status"])
    finally:
        connection.close()


async def test_suspending_the_tenant_closes_its_connections(ws: WsEnv) -> None:
    slug = "suspendable"
    key = await sync_to_async(_tenant_with_key, thread_sensitive=False)(slug)
    try:
        async with ws.connect() as conn:
            await authed(conn, key)
            await sync_to_async(_set_status, thread_sensitive=False)(slug, "suspended")
            failure = await recv(conn, timeout=10)
            assert failure["type"] == "auth_failure" and "suspended" in failure["error"]
            assert await closed_code(conn) == 4401
    finally:
        await sync_to_async(_set_status, thread_sensitive=False)(slug, "active")
