"""Fixtures for the agents WebSocket: agents bound to the fake LLM (committed, so the live
server sees them) and a small client around the ``websockets`` library."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django_tenants.utils import schema_context
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.agents.conftest import make_agent, make_credential
from tests.conftest import LiveServer, Persona

Message = dict[str, Any]


@dataclass(frozen=True)
class TenantAgent:
    """An agent of one persona, with the fake-LLM key that scripts its replies."""

    persona: Persona
    agent_id: str
    llm_key: str


@dataclass
class WsEnv:
    server: LiveServer
    alpha: Persona
    bravo: Persona
    make_agent_now: Callable[[Persona], TenantAgent]

    async def make_agent(self, persona: Persona) -> TenantAgent:
        """A committed agent of ``persona`` bound to the fake LLM (created on a worker thread:
        tests run in the event loop, where the ORM refuses to)."""

        def create() -> TenantAgent:
            try:
                return self.make_agent_now(persona)
            finally:
                connection.close()  # the worker thread's own connection

        return await sync_to_async(create, thread_sensitive=False)()

    def url(self, host: str = "127.0.0.1", query: str = "") -> str:
        return f"ws://{host}:{self.server.port}/agents/ws{'?' + query if query else ''}"

    def connect(self, host: str = "127.0.0.1", query: str = "", **kwargs: Any) -> Any:
        # Connect to 127.0.0.1 whatever the Host header (tenant hosts need no DNS).
        if "sock" not in kwargs:
            kwargs.update(host="127.0.0.1", port=self.server.port)
        return connect(self.url(host, query), open_timeout=10, **kwargs)


@pytest.fixture
def ws(live_server_url, committed_personas, fake_llm, settings) -> WsEnv:
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]  # the live server gets it from its env

    def make(persona: Persona) -> TenantAgent:
        key = f"sk-test-{uuid.uuid4().hex}"
        with schema_context(persona.schema):
            credential = make_credential(kind="openai", base_url=f"{fake_llm.url}/v1", api_key=key)
            agent = make_agent(credential, persona.schema)
        return TenantAgent(persona, str(agent.id), key)

    return WsEnv(live_server_url, committed_personas["alpha"], committed_personas["bravo"], make)


async def send(conn: ClientConnection, message: Message) -> None:
    await conn.send(json.dumps(message))


async def recv(conn: ClientConnection, timeout: float = 10) -> Message:
    async with asyncio.timeout(timeout):
        return json.loads(await conn.recv())


async def authed(conn: ClientConnection, credential: str) -> Message:
    await send(conn, {"type": "auth", "token": credential})
    reply = await recv(conn)
    assert reply["type"] == "auth_success", reply
    return reply


async def until(
    conn: ClientConnection, done: Callable[[Message], bool], timeout: float = 15
) -> list[Message]:
    """Messages received up to and including the first for which ``done`` is true."""
    seen: list[Message] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await conn.recv())
                seen.append(message)
                if done(message):
                    return seen
    except TimeoutError:
        raise AssertionError(f"no expected message within {timeout}s; got {seen}") from None


def terminal_of(execution_id: str) -> Callable[[Message], bool]:
    return lambda m: (
        m.get("execution_id") == execution_id
        and m["type"]
        in {
            "complete",
            "cancelled",
        }
        | ({"error"} if "seq" in m else set())
    )


async def closed_code(conn: ClientConnection, timeout: float = 10) -> int | None:
    """Read until the server closes; the close code it sent (None if none arrived)."""
    async with asyncio.timeout(timeout):
        try:
            while True:
                await conn.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
