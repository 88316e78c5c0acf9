"""One execution core under every interface, tried end to end against the live server in another
process: the same body gets the same answer over REST, SSE and the WebSocket; an
Idempotency-Key holds across them; a blocking run is watched live; a retried stream tells every
client to drop the text it withdrew."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from django_tenants.utils import schema_context

from agents.models import Agent, Execution
from agents.services.agents import agent_update
from tests.api.conftest import auth, sse_events
from tests.ws.conftest import WsEnv, authed, recv, send, terminal_of, until

pytestmark = pytest.mark.django_db(transaction=True)


def _ws_execute(body: dict[str, Any], agent_id: str, **extra: Any) -> dict[str, Any]:
    """The canonical body as a WebSocket ``execute`` message."""
    return {"type": "execute", "agent_id": agent_id, **body, **extra}


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"input": {"message": 42}}, "input.message"),
    ({"input": {"parameters": {"temperature": 7}}}, "input.parameters.temperature"),
    ({"input": {"parameters": {"max_tokens": 10**9}}}, "input.parameters.max_tokens"),
    ({"execution_config": {"timeout_seconds": 0}}, "execution_config.timeout_seconds"),
    (
        {"execution_config": {"retry_config": {"retry_on_errors": ["bogus"]}}},
        "execution_config.retry_config.retry_on_errors.0",
    ),
    ({"context": {"nested": [{"api_base": "http://10.0.0.1"}]}}, "context.nested[0].api_base"),
    ({"context": "not an object"}, "context"),
    # the agent's input schema (message of at most 5 characters) is checked before running
    ({"input": {"message": "far too long"}}, "input"),
]


def test_the_same_bad_body_gets_the_same_answer_on_every_interface(
    ws: WsEnv, live_server_url: Any, fake_llm: Any
) -> None:
    agent = ws.make_agent_now(ws.alpha)
    with schema_context(ws.alpha.schema):
        stored = Agent.objects.get(pk=agent.agent_id)
        agent_update(
            agent=stored,
            changes={
                "input_schema": {
                    "type": "object",
                    "properties": {"message": {"type": "string", "maxLength": 5}},
                }
            },
            actor="tests",
            schema_name=ws.alpha.schema,
        )
    headers = auth(ws.alpha.user_key)
    answers: dict[str, list[tuple[str, str]]] = {"rest": [], "sse": [], "ws": []}
    with httpx.Client(base_url=live_server_url.url, timeout=20) as client:
        for body, _ in BAD_BODIES:
            for kind, path in (("rest", "execute"), ("sse", "execute/stream")):
                response = client.post(
                    f"/agents/{agent.agent_id}/{path}", headers=headers, json=body
                )
                assert response.status_code == 400, (kind, body, response.text)
                error = response.json()["error"]
                answers[kind].append((error["code"], error["message"]))

    async def over_websocket() -> None:
        async with ws.connect() as conn:
            await authed(conn, ws.alpha.user_key)
            for index, (body, _) in enumerate(BAD_BODIES):
                await send(conn, _ws_execute(body, agent.agent_id, request_id=f"r{index}"))
                reply = await recv(conn)
                assert reply["type"] == "error" and reply["request_id"] == f"r{index}", reply
                answers["ws"].append((reply["code"], reply["error"]))

    async_to_sync(over_websocket)()
    assert answers["rest"] == answers["sse"] == answers["ws"]
    for (code, message), (_, field) in zip(answers["rest"], BAD_BODIES, strict=True):
        assert code == "validation_error" and message.startswith(f"{field}:"), message
    # Refused, not stored as failed runs; no upstream call.
    assert fake_llm.requests(agent.llm_key) == []
    with schema_context(ws.alpha.schema):
        assert not Execution.objects.filter(agent_id=agent.agent_id).exists()


def test_an_idempotency_key_starts_one_run_whatever_the_interface(
    ws: WsEnv, live_server_url: Any, fake_llm: Any
) -> None:
    agent = ws.make_agent_now(ws.alpha)
    fake_llm.script(agent.llm_key, {"reply": "only once", "chunks": 2, "chunk_delay": 0.05})
    key = f"key-{uuid.uuid4().hex}"
    body = {"input": {"message": "hello"}}

    async def over_websocket() -> list[str]:
        ids: list[str] = []
        async with ws.connect() as conn:
            await authed(conn, ws.alpha.user_key)
            for attempt in range(2):
                await send(conn, _ws_execute(body, agent.agent_id, idempotency_key=key))
                seen = await until(conn, lambda m: m["type"] == "execution_started")
                ids.append(seen[-1]["execution_id"])
                await until(conn, terminal_of(ids[-1]))
        return ids

    first, second = async_to_sync(over_websocket)()
    assert first == second
    # The same key and body over SSE (a streaming interface too) replays that run's stream.
    with httpx.Client(base_url=live_server_url.url, timeout=20) as client:
        with client.stream(
            "POST",
            f"/agents/{agent.agent_id}/execute/stream",
            headers={**auth(ws.alpha.user_key), "Idempotency-Key": key},
            json=body,
        ) as response:
            assert response.headers["Idempotent-Replayed"] == "true"
            events = sse_events(response)
        complete = next(e for e in events if e.event == "complete").json()
        assert complete["execution_id"] == first and complete["output"] == "only once"
        # The same key with another body is refused, over the WebSocket as over HTTP.
        other = client.post(
            f"/agents/{agent.agent_id}/execute/stream",
            headers={**auth(ws.alpha.user_key), "Idempotency-Key": key},
            json={"input": {"message": "something else"}},
        )
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(fake_llm.requests(agent.llm_key)) == 1


def test_a_watcher_sees_a_blocking_run_live(ws: WsEnv, live_server_url: Any, fake_llm: Any) -> None:
    agent = ws.make_agent_now(ws.alpha)
    fake_llm.script(agent.llm_key, {"reply": "a b c d e f g h", "chunks": 8, "chunk_delay": 0.25})
    headers = auth(ws.alpha.user_key)
    answer: dict[str, Any] = {}

    def blocking() -> None:
        with httpx.Client(base_url=live_server_url.url, timeout=30) as client:
            response = client.post(
                f"/agents/{agent.agent_id}/execute",
                headers=headers,
                json={"input": {"message": "x"}},
            )
            answer["body"] = response.json()
            answer["at"] = time.monotonic()

    caller = threading.Thread(target=blocking)
    caller.start()
    with httpx.Client(base_url=live_server_url.url, timeout=30) as client:
        deadline = time.monotonic() + 10
        running: list[dict[str, Any]] = []
        while not running and time.monotonic() < deadline:
            running = client.get(
                "/executions", headers=headers, params={"agent_id": agent.agent_id}
            ).json()["executions"]
        assert running, "the blocking run never showed up"
        execution_id = running[0]["execution_id"]
        first_chunk_at = None
        with client.stream(
            "GET", f"/agents/{agent.agent_id}/executions/{execution_id}/stream", headers=headers
        ) as stream:
            for line in stream.iter_lines():
                if line == "event: chunk" and first_chunk_at is None:
                    first_chunk_at = time.monotonic()
                if line == "data: [DONE]":
                    break
    caller.join(30)
    assert answer["body"]["output"] == "a b c d e f g h"
    assert first_chunk_at is not None and first_chunk_at < answer["at"] - 0.5, (
        "the watcher saw the text only when the run ended"
    )


def test_a_stream_broken_after_text_is_retried_and_clients_are_told_to_drop_it(
    ws: WsEnv, live_server_url: Any, fake_llm: Any
) -> None:
    agent = ws.make_agent_now(ws.alpha)
    with schema_context(ws.alpha.schema):
        agent_update(
            agent=Agent.objects.get(pk=agent.agent_id),
            changes={"retry_max_attempts": 3, "retry_backoff_seconds": 0},
            actor="tests",
            schema_name=ws.alpha.schema,
        )
    broken = {
        "reply": "withdrawn partial text",
        "chunks": 3,
        "malformed": True,
        "fault_after_chunks": 2,
    }
    fine = {"reply": "the real answer", "chunks": 3}
    fake_llm.script(agent.llm_key, broken, fine, broken, fine)
    with httpx.Client(base_url=live_server_url.url, timeout=20) as client:
        with client.stream(
            "POST",
            f"/agents/{agent.agent_id}/execute/stream",
            headers=auth(ws.alpha.user_key),
            json={"input": {"message": "x"}},
        ) as response:
            events = sse_events(response)
    kinds = [e.event for e in events]
    reset = next(e for e in events if e.event == "reset").json()
    assert reset["discard_from_sequence"] == 1 and reset["reason"] == "malformed_response"
    assert kinds.index("reset") < len(kinds) - 3  # before the retry's text and the end
    assert next(e for e in events if e.event == "complete").json()["output"] == "the real answer"

    async def over_websocket() -> list[dict[str, Any]]:
        async with ws.connect() as conn:
            await authed(conn, ws.alpha.user_key)
            await send(conn, _ws_execute({"input": {"message": "x"}}, agent.agent_id))
            started = (await until(conn, lambda m: m["type"] == "execution_started"))[-1]
            return await until(conn, terminal_of(started["execution_id"]))

    messages = async_to_sync(over_websocket)()
    resets = [m for m in messages if m["type"] == "reset"]
    assert len(resets) == 1 and resets[0]["discard_from_sequence"] == 1
    # A client applying the rule ends with exactly the answer.
    text: list[tuple[int, str]] = []
    for message in messages:
        if message["type"] == "chunk":
            text.append((message["sequence"], message["chunk"]))
        elif message["type"] == "reset":
            text = [(n, t) for n, t in text if n < message["discard_from_sequence"]]
    assert "".join(t for _, t in text) == "the real answer"
    assert json.dumps(messages).count("withdrawn") >= 1  # it was streamed, then withdrawn
