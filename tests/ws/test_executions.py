"""Running and following executions over the agents WebSocket, against the live server
and the fake LLM."""

from __future__ import annotations

import asyncio

import httpx

from tests.ws.conftest import Message, WsEnv, authed, recv, send, terminal_of, until


def of(messages: list[Message], execution_id: str) -> list[Message]:
    return [m for m in messages if m.get("execution_id") == execution_id and "seq" in m]


def text_of(messages: list[Message]) -> str:
    return "".join(m["chunk"] for m in messages if m["type"] == "chunk")


async def started(conn, request_id: str) -> str:
    seen = await until(
        conn, lambda m: m["type"] == "execution_started" and m.get("request_id") == request_id
    )
    return seen[-1]["execution_id"]


async def test_execute_streams_chunks_in_order_then_complete(ws: WsEnv, fake_llm) -> None:
    agent = await ws.make_agent(ws.alpha)
    reply = "one two three four five six"
    fake_llm.script(agent.llm_key, {"reply": reply, "chunks": 6, "chunk_delay": 0.05})
    async with ws.connect() as conn:
        await authed(conn, ws.alpha.user_key)
        await send(
            conn,
            {
                "type": "execute",
                "agent_id": agent.agent_id,
                "context": {"ticket": 7},
                "input": {"message": "count to six", "parameters": {}},
                "request_id": "r-1",
            },
        )
        first = await recv(conn)
        assert first["type"] == "execution_started" and first["request_id"] == "r-1"
        assert first["agent_id"] == agent.agent_id and first["seq"] == 1
        execution_id = first["execution_id"]
        rest = await until(conn, terminal_of(execution_id))
    events = [first, *of(rest, execution_id)]
    assert [m["seq"] for m in events] == list(range(1, len(events) + 1))
    chunks = [m for m in events if m["type"] == "chunk"]
    assert chunks and [c["sequence"] for c in chunks] == sorted(c["sequence"] for c in chunks)
    assert text_of(events) == reply
    complete = events[-1]
    assert complete["type"] == "complete" and complete["response"] == reply
    assert complete["usage"]["output_tokens"] > 0 and "timestamp" in complete
    sent = fake_llm.requests(agent.llm_key)[-1]["json"]
    assert sent["messages"][-1]["content"] == "count to six"


async def test_two_concurrent_executions_on_one_connection(ws: WsEnv, fake_llm) -> None:
    first, second = await ws.make_agent(ws.alpha), await ws.make_agent(ws.alpha)
    fake_llm.script(first.llm_key, {"reply": "first slow answer", "chunks": 3, "chunk_delay": 0.2})
    fake_llm.script(second.llm_key, {"reply": "second quick answer", "chunks": 3})
    async with ws.connect() as conn:
        await authed(conn, ws.alpha.user_key)
        for agent, request_id in ((first, "a"), (second, "b")):
            await send(
                conn,
                {
                    "type": "execute",
                    "agent_id": agent.agent_id,
                    "message": "go",
                    "request_id": request_id,
                },
            )
        seen: list[Message] = []
        ids: dict[str, str] = {}
        done: set[str] = set()
        while len(done) < 2:
            message = await recv(conn)
            seen.append(message)
            if message["type"] == "execution_started":
                ids[message["request_id"]] = message["execution_id"]
            if message["type"] == "complete":
                done.add(message["execution_id"])
    assert set(ids) == {"a", "b"} and done == set(ids.values())
    for request_id, reply in (("a", "first slow answer"), ("b", "second quick answer")):
        events = of(seen, ids[request_id])
        assert [m["seq"] for m in events] == list(range(1, len(events) + 1))
        assert text_of(events) == reply and events[-1]["response"] == reply
    # they ran at the same time: the quick one finished while the slow one streamed
    order = [m["execution_id"] for m in seen if m["type"] == "complete"]
    assert order == [ids["b"], ids["a"]]


async def test_subscribe_from_another_connection_live_then_replay_and_resume(
    ws: WsEnv, fake_llm
) -> None:
    agent = await ws.make_agent(ws.alpha)
    reply = " ".join(f"w{i}" for i in range(12))
    fake_llm.script(agent.llm_key, {"reply": reply, "chunks": 12, "chunk_delay": 0.1})
    async with ws.connect() as runner, ws.connect() as watcher:
        await authed(runner, ws.alpha.user_key)
        await authed(watcher, ws.alpha.readonly_key)
        await send(
            runner,
            {"type": "execute", "agent_id": agent.agent_id, "message": "go", "request_id": "x"},
        )
        execution_id = await started(runner, "x")
        await send(watcher, {"type": "subscribe", "execution_id": execution_id})
        assert await recv(watcher) == {
            "type": "subscribed",
            "execution_id": execution_id,
            "after": 0,
        }
        watched, ran = await asyncio.gather(
            until(watcher, terminal_of(execution_id)), until(runner, terminal_of(execution_id))
        )
    watched = of(watched, execution_id)
    assert [m["seq"] for m in watched] == list(range(1, len(watched) + 1))
    assert text_of(watched) == reply and watched[-1]["response"] == reply
    assert [m["seq"] for m in watched][-1] == of(ran, execution_id)[-1]["seq"]

    # finished: a new connection gets the whole log again, or the rest after a cursor
    async with ws.connect() as late:
        await authed(late, ws.alpha.readonly_key)
        await send(late, {"type": "subscribe", "execution_id": execution_id})
        await recv(late)
        replay = of(await until(late, terminal_of(execution_id)), execution_id)
        assert [(m["seq"], m["type"]) for m in replay] == [(m["seq"], m["type"]) for m in watched]
        cursor = replay[2]["seq"]
        await send(late, {"type": "subscribe", "execution_id": execution_id, "after": cursor})
        assert (await recv(late))["after"] == cursor
        resumed = of(await until(late, terminal_of(execution_id)), execution_id)
        assert [m["seq"] for m in resumed] == [m["seq"] for m in replay if m["seq"] > cursor]
        await send(late, {"type": "ping"})
        assert (await recv(late))["type"] == "pong"  # nothing else (no duplicates) came


async def test_unsubscribe_stops_the_stream_not_the_run(ws: WsEnv, fake_llm) -> None:
    agent = await ws.make_agent(ws.alpha)
    fake_llm.script(agent.llm_key, {"reply": "a b c d e f g h", "chunks": 8, "chunk_delay": 0.1})
    async with ws.connect() as conn:
        await authed(conn, ws.alpha.user_key)
        await send(
            conn,
            {"type": "execute", "agent_id": agent.agent_id, "message": "go", "request_id": "u"},
        )
        execution_id = await started(conn, "u")
        await send(conn, {"type": "unsubscribe", "execution_id": execution_id})
        seen = await until(conn, lambda m: m["type"] == "unsubscribed")
        assert not any(m["type"] == "complete" for m in seen)
        await asyncio.sleep(1.2)  # the run finishes meanwhile; nothing more is sent for it
        await send(conn, {"type": "ping"})
        assert (await recv(conn))["type"] == "pong"
        await send(conn, {"type": "subscribe", "execution_id": execution_id})
        replay = await until(conn, terminal_of(execution_id))
        assert replay[-1]["type"] == "complete", replay[-1]
        assert replay[-1]["response"] == "a b c d e f g h"


async def test_cancel_stops_the_upstream_call(ws: WsEnv, fake_llm) -> None:
    agent = await ws.make_agent(ws.alpha)
    fake_llm.script(agent.llm_key, {"reply": "w " * 40, "chunks": 40, "chunk_delay": 0.1})
    async with ws.connect() as conn:
        await authed(conn, ws.alpha.user_key)
        await send(
            conn,
            {"type": "execute", "agent_id": agent.agent_id, "message": "go", "request_id": "c"},
        )
        execution_id = await started(conn, "c")
        await until(conn, lambda m: m["type"] == "chunk")
        await send(conn, {"type": "cancel", "execution_id": execution_id})
        seen = await until(conn, terminal_of(execution_id))
    ack = next(m for m in seen if m["type"] == "cancel_requested")
    assert ack["execution_id"] == execution_id
    assert seen[-1]["type"] == "cancelled" and "seq" in seen[-1]
    await asyncio.to_thread(
        fake_llm.wait_for, agent.llm_key, lambda r: r.get("client_closed") is True
    )


async def test_closing_the_socket_cancels_the_runs_it_started(ws: WsEnv, fake_llm) -> None:
    agent = await ws.make_agent(ws.alpha)
    fake_llm.script(agent.llm_key, {"reply": "w " * 40, "chunks": 40, "chunk_delay": 0.1})
    async with ws.connect() as conn:
        await authed(conn, ws.alpha.user_key)
        await send(
            conn,
            {"type": "execute", "agent_id": agent.agent_id, "message": "go", "request_id": "d"},
        )
        execution_id = await started(conn, "d")
        await until(conn, lambda m: m["type"] == "chunk")
    await asyncio.to_thread(
        fake_llm.wait_for, agent.llm_key, lambda r: r.get("client_closed") is True
    )
    async with ws.connect() as conn:
        await authed(conn, ws.alpha.readonly_key)
        await send(conn, {"type": "subscribe", "execution_id": execution_id})
        replay = await until(conn, terminal_of(execution_id))
    assert replay[-1]["type"] == "cancelled"


async def test_permissions_and_request_errors(ws: WsEnv, fake_llm) -> None:
    agent = await ws.make_agent(ws.alpha)
    async with ws.connect() as conn:
        await authed(conn, ws.alpha.readonly_key)
        await send(conn, {"type": "execute", "agent_id": agent.agent_id, "request_id": "ro"})
        reply = await recv(conn)
        assert reply["type"] == "error" and reply["code"] == "permission_denied"
        assert reply["request_id"] == "ro"
        await send(conn, {"type": "cancel", "execution_id": "whatever"})
        assert (await recv(conn))["code"] == "permission_denied"
    async with ws.connect() as conn:
        await authed(conn, ws.alpha.user_key)
        await send(conn, {"type": "execute", "agent_id": "no-such-agent", "request_id": "nf"})
        reply = await recv(conn)
        assert (reply["code"], reply["request_id"]) == ("not_found", "nf")
        await send(
            conn,
            {"type": "execute", "agent_id": agent.agent_id, "base_url": "http://169.254.169.254"},
        )
        assert (await recv(conn))["code"] == "validation_error"
        for bad in (
            {"context": {"nested": {"api_base": "http://10.0.0.1"}}},  # at any depth (case 14)
            {"input": {"message": "hi", "parameters": {"max_tokens": 10**9}}},  # case 17
            {"input": {"message": 42}},
            {"timeout_seconds": 0},
        ):
            await send(conn, {"type": "execute", "agent_id": agent.agent_id, **bad})
            assert (await recv(conn))["code"] == "validation_error", bad
        await send(conn, {"type": "subscribe", "execution_id": "x", "after": -1})
        assert (await recv(conn))["code"] == "validation_error"
        await send(conn, {"type": "launch"})
        assert (await recv(conn))["code"] == "bad_request"
        await send(conn, {"type": "ping"})
        assert (await recv(conn))["type"] == "pong"  # errors do not close the connection
    assert fake_llm.requests(agent.llm_key) == []


async def test_subscribe_to_an_execution_run_over_rest(ws: WsEnv, fake_llm) -> None:
    agent = await ws.make_agent(ws.alpha)
    reply = " ".join(f"r{i}" for i in range(10))
    fake_llm.script(agent.llm_key, {"reply": reply, "chunks": 10, "chunk_delay": 0.1})
    headers = {"Authorization": f"Bearer {ws.alpha.user_key}"}
    async with httpx.AsyncClient(base_url=ws.server.url, headers=headers, timeout=30) as http:
        blocking = asyncio.create_task(
            http.post(f"/agents/{agent.agent_id}/execute", json={"input": {"message": "go"}})
        )
        execution_id = None
        while execution_id is None:  # the blocking call is running: find its execution
            await asyncio.sleep(0.05)
            listed = await http.get(f"/agents/{agent.agent_id}/executions")
            items = listed.json().get("executions", []) if listed.status_code == 200 else []
            execution_id = items[0]["execution_id"] if items else None
            assert not blocking.done(), "the REST run ended before it was listed"
        async with ws.connect() as conn:
            await authed(conn, ws.alpha.readonly_key)
            await send(conn, {"type": "subscribe", "execution_id": execution_id})
            live = of(await until(conn, terminal_of(execution_id)), execution_id)
        response = (await blocking).json()
    assert response["execution_id"] == execution_id and response["output"] == reply
    assert [m["seq"] for m in live] == list(range(1, len(live) + 1))
    assert text_of(live) == reply and live[-1]["response"] == reply
