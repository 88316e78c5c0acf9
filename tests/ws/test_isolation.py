"""Tenant isolation over WebSockets (reliability cases 1, 8 and 9): two tenants executing and
following at the same time on one server never see each other's data; another tenant's
execution id is simply not found."""

from __future__ import annotations

import asyncio
import json

from tests.ws.conftest import (
    Message,
    TenantAgent,
    WsEnv,
    authed,
    recv,
    send,
    terminal_of,
    until,
)

RUNS = 3


async def run_tenant(ws: WsEnv, agent: TenantAgent, credential: str) -> tuple[list[str], str]:
    """Start RUNS executions on one socket, follow each from a second socket; return the ids
    and everything both sockets received (as text)."""
    slug = agent.persona.slug
    received: list[Message] = []
    async with ws.connect() as runner, ws.connect() as watcher:
        await authed(runner, credential)
        await authed(watcher, credential)
        for i in range(RUNS):
            await send(
                runner,
                {
                    "type": "execute",
                    "agent_id": agent.agent_id,
                    "message": f"{slug} question {i}",
                    "request_id": f"{slug}-{i}",
                },
            )
        ids: list[str] = []
        completed: set[str] = set()
        while len(completed) < RUNS:
            message = await recv(runner, timeout=20)
            received.append(message)
            if message["type"] == "execution_started":
                ids.append(message["execution_id"])
                await send(watcher, {"type": "subscribe", "execution_id": message["execution_id"]})
            elif message["type"] == "complete":
                completed.add(message["execution_id"])
        finished: set[str] = set()
        while finished != set(ids):  # the watcher's streams interleave: read until all end
            message = await recv(watcher, timeout=20)
            received.append(message)
            if any(terminal_of(execution_id)(message) for execution_id in ids):
                finished.add(message["execution_id"])
    return ids, json.dumps(received)


async def test_two_tenants_interleaved_never_see_each_other(ws: WsEnv, fake_llm) -> None:
    alpha_agent = await ws.make_agent(ws.alpha)
    bravo_agent = await ws.make_agent(ws.bravo)
    for agent in (alpha_agent, bravo_agent):
        slug = agent.persona.slug
        for i in range(RUNS):
            fake_llm.script(
                agent.llm_key,
                {"reply": f"{slug}-secret-{i} " * 4, "chunks": 4, "chunk_delay": 0.05},
            )
    (alpha_ids, alpha_seen), (bravo_ids, bravo_seen) = await asyncio.gather(
        run_tenant(ws, alpha_agent, ws.alpha.user_key),
        run_tenant(ws, bravo_agent, ws.bravo.user_key),
    )
    assert alpha_seen.count("alpha-secret-") >= RUNS and "bravo" not in alpha_seen
    assert bravo_seen.count("bravo-secret-") >= RUNS and "alpha" not in bravo_seen
    assert bravo_agent.agent_id not in alpha_seen and alpha_agent.agent_id not in bravo_seen

    # each tenant asks for the other's executions by id: not found, for read and for cancel
    async with ws.connect() as alpha, ws.connect() as bravo:
        await authed(alpha, ws.alpha.admin_key)
        await authed(bravo, ws.bravo.admin_key)
        for conn, foreign in ((alpha, bravo_ids[0]), (bravo, alpha_ids[0])):
            for kind in ("subscribe", "cancel"):
                await send(conn, {"type": kind, "execution_id": foreign})
                reply = await recv(conn)
                assert reply["type"] == "error" and reply["code"] == "not_found"
                assert reply["execution_id"] == foreign and "seq" not in reply
        # and their own are there
        await send(alpha, {"type": "subscribe", "execution_id": alpha_ids[0]})
        assert (await recv(alpha))["type"] == "subscribed"


async def test_bravo_cannot_cancel_a_running_alpha_execution(ws: WsEnv, fake_llm) -> None:
    agent = await ws.make_agent(ws.alpha)
    fake_llm.script(agent.llm_key, {"reply": "slow " * 10, "chunks": 10, "chunk_delay": 0.1})
    async with ws.connect() as alpha, ws.connect() as bravo:
        await authed(alpha, ws.alpha.user_key)
        await authed(bravo, ws.bravo.admin_key)
        await send(
            alpha,
            {"type": "execute", "agent_id": agent.agent_id, "message": "go", "request_id": "a"},
        )
        execution_id = (await recv(alpha))["execution_id"]
        await send(bravo, {"type": "cancel", "execution_id": execution_id})
        assert (await recv(bravo))["code"] == "not_found"
        seen = await until(alpha, terminal_of(execution_id))
    assert seen[-1]["type"] == "complete" and seen[-1]["response"] == "slow " * 10
