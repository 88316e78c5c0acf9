"""Outbound limits: a client that stops reading cannot make the server buffer without limit
(case 17), and a message too large for one frame is split or trimmed, never dropped silently."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import LIVE_SERVER, live_server
from tests.ws.conftest import TenantAgent, WsEnv, authed, recv, send, terminal_of, until

# ~100 event rows of ~8 KB, then a complete message carrying the whole 800 KB answer
BIG_REPLY = "xxxxxxx " * 100_000
RUNS = 4


async def run_to_end(
    ws: WsEnv, agent: TenantAgent, fake_llm, reply: str = BIG_REPLY
) -> tuple[str, list]:
    fake_llm.script(agent.llm_key, {"reply": reply, "chunks": 200})
    async with ws.connect(max_size=None) as conn:
        await authed(conn, ws.alpha.user_key)
        await send(conn, {"type": "execute", "agent_id": agent.agent_id, "message": "go"})
        execution_id = (await recv(conn))["execution_id"]
        rest = await until(conn, terminal_of(execution_id), timeout=30)
    return execution_id, rest


@pytest.fixture(params=["daphne", "granian"])
def ws_under(request: pytest.FixtureRequest, ws: WsEnv) -> Iterator[WsEnv]:
    """``ws`` served by each server: daphne signals a full send buffer to the consumer's
    producer, granian makes ``send`` wait; each way needs its own guard."""
    if request.param == LIVE_SERVER:
        yield ws
        return
    with live_server(request.param) as server:
        yield dataclasses.replace(ws, server=server)


async def test_a_client_that_stops_reading_is_disconnected(ws_under: WsEnv, fake_llm) -> None:
    ws = ws_under
    # More than the kernel will buffer for one socket (tcp_wmem allows up to 4 MiB), so that
    # the excess would have to pile up in the server process.
    agent = await ws.make_agent(ws.alpha)
    runs = [await run_to_end(ws, agent, fake_llm) for _ in range(RUNS)]
    total = sum(1 + len(rest) for _, rest in runs)
    assert all(rest[-1]["type"] == "complete" for _, rest in runs)

    # A reader that never reads: a tiny receive buffer, and the client library stops pulling
    # from the socket after one frame.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", ws.server.port))
    code: int | None = -1
    received: list[dict] = []
    async with ws.connect(sock=sock, max_queue=1, max_size=None) as slow:
        await authed(slow, ws.alpha.readonly_key)
        for execution_id, _ in runs:
            await send(slow, {"type": "subscribe", "execution_id": execution_id})
        await asyncio.sleep(8)  # longer than the server's patience (5 s)
        try:
            async with asyncio.timeout(20):
                while sum(m["type"] == "complete" for m in received) < RUNS:
                    received.append(json.loads(await slow.recv()))
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
    # 4008, or None when the server had to drop the connection before its close frame got
    # through; either way it stopped queueing for this client instead of buffering it all.
    assert code in (4008, None), (code, len(received), total)
    assert len(received) < total

    # the server carries on, and the executions are whole for a client that reads
    execution_id, rest = runs[0]
    async with ws.connect(max_size=None) as reader:
        await authed(reader, ws.alpha.readonly_key)
        await send(reader, {"type": "subscribe", "execution_id": execution_id, "after": 1})
        tail = await until(reader, terminal_of(execution_id))
    assert tail[-1]["type"] == "complete" and tail[-1]["response"] == BIG_REPLY
    assert len(tail) == len(rest) + 1  # subscribed + everything after seq 1


async def test_a_message_over_the_frame_limit_is_trimmed_not_lost(ws: WsEnv, fake_llm) -> None:
    agent = await ws.make_agent(ws.alpha)
    reply = "yyyyyyy " * 160_000  # 1.28 MB: the complete message cannot fit in 1 MiB
    _, rest = await run_to_end(ws, agent, fake_llm, reply)
    complete = rest[-1]
    assert complete["type"] == "complete" and complete["truncated"] is True
    assert complete["response"] is None and complete["seq"] > 1
    assert "".join(m["chunk"] for m in rest if m["type"] == "chunk") == reply
