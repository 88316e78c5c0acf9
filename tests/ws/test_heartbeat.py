"""An idle agents WebSocket hears from the server every WS_HEARTBEAT_SECONDS: ASGI lets the
application send no ping frames, and granian (the Procfile's alternative) sends none itself."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from datetime import datetime

import pytest

from tests.conftest import live_server
from tests.ws.conftest import WsEnv, authed, recv, send


@pytest.fixture
def ws_beating(ws: WsEnv) -> Iterator[WsEnv]:
    with live_server(WS_HEARTBEAT_SECONDS="0.3") as server:
        yield dataclasses.replace(ws, server=server)


async def test_an_idle_connection_gets_heartbeats_between_answers(ws_beating: WsEnv) -> None:
    async with ws_beating.connect() as conn:
        await authed(conn, ws_beating.alpha.user_key)
        beats = [await recv(conn, timeout=5) for _ in range(3)]
        assert [b["type"] for b in beats] == ["heartbeat"] * 3
        stamps = [datetime.fromisoformat(b["timestamp"]) for b in beats]
        assert stamps == sorted(stamps) and stamps[0] < stamps[-1]
        # Requests are still answered in between.
        await send(conn, {"type": "ping"})
        async with asyncio.timeout(5):
            while (message := json.loads(await conn.recv()))["type"] == "heartbeat":
                pass
        assert message["type"] == "pong"
