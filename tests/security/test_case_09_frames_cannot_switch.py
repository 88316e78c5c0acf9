"""Reliability case 9: the tenant and principal of a WebSocket are fixed at its handshake and
first auth; no later frame changes them. A frame naming another tenant, carrying another
credential or another principal, or aiming at another tenant's agent is refused, and the
connection goes on as the tenant and role it started with. (SSE has no client frames: its
tenant is the request's, proven in tests/api/test_cross_tenant_api.py.)"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django_tenants.utils import schema_context

from agents.models import Execution
from tests.ws.conftest import WsEnv, authed, recv, send, until


async def test_no_frame_switches_the_tenant_or_principal(ws: WsEnv, fake_llm) -> None:
    alpha_agent = await ws.make_agent(ws.alpha)
    bravo_agent = await ws.make_agent(ws.bravo)
    async with ws.connect() as conn:
        first = await authed(conn, ws.alpha.user_key)
        # Another tenant's agent, with every field that might name a tenant or principal.
        for extra in (
            {},
            {"tenant": ws.bravo.slug},
            {"tenant_id": ws.bravo.schema, "schema": ws.bravo.schema},
            {"token": ws.bravo.admin_key},
            {"principal": "api_key:bravo-admin", "role": "admin"},
        ):
            await send(
                conn,
                {
                    "type": "execute",
                    "agent_id": bravo_agent.agent_id,
                    "message": "switch?",
                    "request_id": "x",
                    **extra,
                },
            )
            reply = await recv(conn)
            assert reply["type"] == "error", (extra, reply)
            assert reply["code"] in {"not_found", "validation_error"}, (extra, reply)
    async with ws.connect() as conn:
        await authed(conn, ws.alpha.readonly_key)
        # A readonly credential may not run, whatever a frame claims about its role.
        await send(
            conn,
            {
                "type": "execute",
                "agent_id": alpha_agent.agent_id,
                "message": "as admin?",
                "request_id": "y",
                "role": "admin",
                "token": ws.alpha.admin_key,
            },
        )
        refused = await recv(conn)
        assert refused["type"] == "error", refused
        assert refused["code"] in {"permission_denied", "validation_error"}, refused
        # A second auth frame with the other tenant's key changes nothing either.
        await send(conn, {"type": "auth", "token": ws.bravo.admin_key})
        assert (await recv(conn))["code"] == "already_authenticated"
        await send(conn, {"type": "subscribe", "execution_id": "anything"})
        assert (await recv(conn))["code"] == "not_found"
        await send(conn, {"type": "ping"})
        assert (await recv(conn))["type"] == "pong"
    assert first["type"] == "auth_success"
    # An alpha user's socket still runs alpha's agent only.
    async with ws.connect() as conn:
        await authed(conn, ws.alpha.user_key)
        await send(
            conn,
            {
                "type": "execute",
                "agent_id": alpha_agent.agent_id,
                "message": "mine",
                "request_id": "z",
            },
        )
        seen = await until(conn, lambda m: m["type"] in {"complete", "error"}, timeout=20)
        assert seen[-1]["type"] == "complete", seen

    def counts() -> tuple[int, int]:
        with schema_context(ws.bravo.schema):
            in_bravo = Execution.objects.count()
        with schema_context(ws.alpha.schema):
            in_alpha = Execution.objects.filter(agent_id=alpha_agent.agent_id).count()
        return in_bravo, in_alpha

    assert await sync_to_async(counts)() == (0, 1)
