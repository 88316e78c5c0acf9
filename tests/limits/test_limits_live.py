"""Limits against live servers: buckets shared by two processes (PostgreSQL and Redis), every
limit over REST, SSE and WebSocket, a budget under 50 concurrent runs, load shedding, fairness.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django_tenants.utils import schema_context

from agents.models import Execution, UsageCounter
from tests.api.conftest import auth, llm_agent_for, sse_events
from tests.conftest import live_server
from tests.limits.conftest import flush_redis_buckets, price, redis_reachable
from tests.mcp.conftest import INITIALIZE
from tests.ws.conftest import authed, recv, send

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for_plan(url: str, key: str, field: str, value: Any, deadline: float = 10) -> None:
    """Until the server's view of the plan (GET /plan) shows ``field == value``: plan changes
    reach other processes by NOTIFY."""
    end = time.monotonic() + deadline
    seen = None
    while time.monotonic() < end:
        seen = httpx.get(f"{url}/plan", headers=auth(key)).json()["plan"].get(field)
        if seen == value:
            return
        time.sleep(0.05)
    raise AssertionError(f"plan {field} still {seen!r}, wanted {value!r}")


@pytest.mark.parametrize("backend", ["postgres", "redis"])
def test_request_buckets_are_shared_by_two_server_processes(backend, committed_personas, plan_on):
    if backend == "redis":
        if not redis_reachable():
            pytest.skip("no Redis on 127.0.0.1:6379 on this machine")
        env = {"RATE_LIMIT_BACKEND": "redis", "REDIS_URL": "redis://127.0.0.1:6379/0"}
    else:
        env = {"RATE_LIMIT_BACKEND": "postgres"}
    alpha, bravo = committed_personas["alpha"], committed_personas["bravo"]
    flush_redis_buckets()
    plan_on(alpha, requests_per_minute_per_key=4, requests_per_minute=6)
    with live_server(**env) as one, live_server(**env) as two:
        servers = [one.url, two.url]
        # Each process's cache was filled before or after the change: wait until both see it.
        for url in servers:
            wait_for_plan(url, alpha.admin_key, "requests_per_minute_per_key", 4)
        flush_redis_buckets()
        with schema_context("public"):
            from tenants.models import RateBucket

            RateBucket.objects.all().delete()
        answers = [
            httpx.get(f"{servers[i % 2]}/auth/whoami", headers=auth(alpha.user_key))
            for i in range(5)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
        remaining = [int(a.headers["RateLimit-Remaining"]) for a in answers[:4]]
        assert remaining == sorted(remaining, reverse=True) and remaining[-1] == 0
        refused = answers[-1]
        assert refused.json()["error"]["code"] == "key_request_rate_exceeded"
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["RateLimit-Limit"] == "4"
        assert refused.headers["RateLimit-Policy"] == "4;w=60"
        # Another key of the tenant has its own bucket, until the tenant's 6 are used up.
        other = [
            httpx.get(f"{servers[i % 2]}/auth/whoami", headers=auth(alpha.readonly_key))
            for i in range(2)
        ]
        assert [a.status_code for a in other] == [200, 429]
        assert other[-1].json()["error"]["code"] == "tenant_request_rate_exceeded"
        # The other tenant is not touched by alpha's limits.
        for url in servers:
            assert httpx.get(f"{url}/auth/whoami", headers=auth(bravo.user_key)).status_code == 200
        # MCP, a third transport, is refused by the same access module with the same headers.
        mcp = httpx.post(
            f"{one.url}/mcp",
            headers={**auth(alpha.user_key), "Accept": "application/json, text/event-stream"},
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        )
        assert mcp.status_code == 429 and "Retry-After" in mcp.headers


async def test_execution_rate_over_rest_sse_and_websocket(
    live_server_url, committed_personas, fake_llm, plan_on, settings
):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    from asgiref.sync import sync_to_async

    alpha = committed_personas["alpha"]
    url = live_server_url.url
    agent = await sync_to_async(llm_agent_for)(alpha, fake_llm)
    await sync_to_async(plan_on)(alpha, executions_per_hour_per_key=1)
    await sync_to_async(wait_for_plan)(url, alpha.user_key, "executions_per_hour_per_key", 1)
    await sync_to_async(flush_redis_buckets)()
    fake_llm.script(agent.key, {"reply": "first"})
    async with httpx.AsyncClient(base_url=url, headers=auth(alpha.user_key)) as client:
        first = await client.post(
            f"/agents/{agent.agent.slug}/execute", json={"input": {"message": "x"}}
        )
        assert first.status_code == 200, first.text
        rest = await client.post(
            f"/agents/{agent.agent.slug}/execute", json={"input": {"message": "x"}}
        )
        assert rest.status_code == 429
        assert rest.json()["error"]["code"] == "key_execution_rate_exceeded"
        assert int(rest.headers["Retry-After"]) >= 1 and rest.headers["RateLimit-Limit"] == "1"
        sse = await client.post(
            f"/agents/{agent.agent.slug}/execute/stream", json={"input": {"message": "x"}}
        )
        assert sse.status_code == 429
        assert sse.json()["error"]["code"] == "key_execution_rate_exceeded"
        assert "Retry-After" in sse.headers
    from websockets.asyncio.client import connect

    ws_url = f"ws://127.0.0.1:{live_server_url.port}/agents/ws"
    async with connect(ws_url, open_timeout=10) as conn:
        await authed(conn, alpha.user_key)
        await send(
            conn,
            {"type": "execute", "agent_id": agent.agent.id, "input": {"message": "x"}},
        )
        refused = await recv(conn)
    assert refused["type"] == "error" and refused["code"] == "key_execution_rate_exceeded"
    assert refused["retry_after"] >= 1

    def stored() -> int:
        with schema_context(alpha.schema):
            return Execution.objects.filter(agent=agent.agent).count()

    assert await sync_to_async(stored)() == 1


async def test_websocket_request_frames_count_against_the_request_rate(
    live_server_url, committed_personas, plan_on
):
    """An open connection is no way around the per-minute buckets: each request frame is one
    request (pings are not). Over the limit the frame gets an error with ``retry_after`` and
    the connection stays open; another tenant on the same server is unaffected."""
    from asgiref.sync import sync_to_async
    from websockets.asyncio.client import connect

    alpha, bravo = committed_personas["alpha"], committed_personas["bravo"]
    url = live_server_url.url
    await sync_to_async(plan_on)(alpha, requests_per_minute_per_key=3)
    # Read with the other key: the user key's bucket stays full until the connection.
    await sync_to_async(wait_for_plan)(url, alpha.readonly_key, "requests_per_minute_per_key", 3)
    await sync_to_async(flush_redis_buckets)()
    ws_url = f"ws://127.0.0.1:{live_server_url.port}/agents/ws"
    async with connect(ws_url, open_timeout=10) as conn:
        await authed(conn, alpha.user_key)
        replies = []
        for n in range(5):
            await send(conn, {"type": "unsubscribe", "execution_id": f"exec_{n}"})
            replies.append(await recv(conn))
        kinds = [reply["type"] for reply in replies]
        refused = [reply for reply in replies if reply["type"] == "error"]
        # At most three requests a minute, the handshake's included: some frames went through,
        # and from the first refusal on every frame is refused.
        assert kinds[0] == "unsubscribed" and refused, kinds
        assert kinds == sorted(kinds, key=lambda kind: kind == "error"), kinds
        assert len(replies) - len(refused) <= 3
        assert refused[0]["code"] == "key_request_rate_exceeded"
        assert refused[0]["retry_after"] >= 1
        assert refused[0]["execution_id"] == f"exec_{len(replies) - len(refused)}"
        await send(conn, {"type": "ping"})
        assert (await recv(conn))["type"] == "pong"
    async with connect(ws_url, open_timeout=10) as other:
        await authed(other, bravo.user_key)
        for n in range(5):
            await send(other, {"type": "unsubscribe", "execution_id": f"exec_{n}"})
            assert (await recv(other))["type"] == "unsubscribed"


async def test_budget_holds_under_fifty_concurrent_runs(
    live_server_url, committed_personas, fake_llm, plan_on, settings
):
    """Each run's bound is 50 (100 output tokens at 0.5); each really costs 15 (30 tokens).
    Without reservations all 50 would run and spend 750; the budget is 300."""
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    from asgiref.sync import sync_to_async

    alpha = committed_personas["alpha"]
    url = live_server_url.url
    agent = await sync_to_async(llm_agent_for)(alpha, fake_llm, max_tokens=100)
    await sync_to_async(price)(alpha.schema, "fake-model", output_pm="500000")
    await sync_to_async(plan_on)(alpha, cost_budget=Decimal("300"), budget_period="day")
    await sync_to_async(wait_for_plan)(url, alpha.user_key, "cost_budget", "300")
    reply = "x" * 120  # 120 characters: 30 tokens as the fake counts them
    fake_llm.script(agent.key, *[{"reply": reply, "chunk_delay": 0.01, "chunks": 4}] * 60)
    async with httpx.AsyncClient(base_url=url, headers=auth(alpha.user_key), timeout=60) as client:
        answers = await asyncio.gather(
            *[
                client.post(
                    f"/agents/{agent.agent.slug}/execute", json={"input": {"message": "go"}}
                )
                for _ in range(50)
            ]
        )
    codes = [a.status_code for a in answers]
    completed = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(completed) + len(refused) == 50, codes
    assert refused and all(a.json()["error"]["code"] == "budget_exceeded" for a in refused)
    assert all(a.json()["status"] == "completed" for a in completed)

    def stored() -> tuple[Decimal, Decimal]:
        with schema_context(alpha.schema):
            spent = sum((e.cost for e in Execution.objects.filter(agent=agent.agent)), Decimal(0))
            return spent, UsageCounter.objects.get(period="day").cost

    spent, counted = await sync_to_async(stored)()
    assert spent <= Decimal("300") and spent == counted
    assert len(completed) >= 5  # the budget was used, not refused wholesale


def test_overloaded_process_sheds_load_with_503(committed_personas, fake_llm, settings):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    alpha = committed_personas["alpha"]
    agent = llm_agent_for(alpha, fake_llm)
    fake_llm.script(
        agent.key,
        {"reply": "slow one two three", "chunks": 4, "chunk_delay": 1.0},
        {"reply": "after"},
    )
    with live_server(MAX_RUNS_PER_PROCESS="1", SHED_RETRY_AFTER_SECONDS="3") as server:
        with httpx.Client(base_url=server.url, headers=auth(alpha.user_key), timeout=30) as c:
            with c.stream(
                "POST",
                f"/agents/{agent.agent.slug}/execute/stream",
                json={"input": {"message": "a"}},
            ) as stream:
                lines = stream.iter_lines()
                # The first event: the run is executing in this process from here on.
                assert stream.status_code == 200, stream.read()
                first = sse_events(lines, stop_after="execution.started")
                assert first[-1].event == "execution.started", first
                shed = c.post(
                    f"/agents/{agent.agent.slug}/execute", json={"input": {"message": "b"}}
                )
                assert shed.status_code == 503, shed.text
                assert shed.json()["error"]["code"] == "overloaded"
                assert shed.headers["Retry-After"] == "3"
                rest = sse_events(lines)
                assert [e.event for e in rest][-2:] == ["complete", "message"]
                assert rest[-1].data == "[DONE]"
            # Once the first run is over, the process takes runs again.
            after = c.post(f"/agents/{agent.agent.slug}/execute", json={"input": {"message": "c"}})
            assert after.status_code == 200 and after.json()["status"] == "completed"


async def test_a_tenant_at_its_limit_does_not_hold_up_another(
    live_server_url, committed_personas, fake_llm, plan_on, settings
):
    """Alpha hammers the server past its request limit while bravo runs agents: every one of
    bravo's runs is admitted and completes."""
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    from asgiref.sync import sync_to_async

    alpha, bravo = committed_personas["alpha"], committed_personas["bravo"]
    url = live_server_url.url
    theirs = await sync_to_async(llm_agent_for)(bravo, fake_llm)
    await sync_to_async(plan_on)(alpha, requests_per_minute=5)
    await sync_to_async(wait_for_plan)(url, alpha.user_key, "requests_per_minute", 5)
    await sync_to_async(flush_redis_buckets)()
    fake_llm.script(theirs.key, *[{"reply": "fine"}] * 20)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        hammer = [client.get("/auth/whoami", headers=auth(alpha.user_key)) for _ in range(40)]
        runs = [
            client.post(
                f"/agents/{theirs.agent.slug}/execute",
                json={"input": {"message": "m"}},
                headers=auth(bravo.user_key),
            )
            for _ in range(20)
        ]
        answers = await asyncio.gather(*hammer, *runs)
    alpha_codes = [a.status_code for a in answers[:40]]
    assert alpha_codes.count(429) >= 35
    assert [a.status_code for a in answers[40:]] == [200] * 20
    assert all(a.json()["status"] == "completed" for a in answers[40:])


async def test_open_streams_per_key_over_sse_and_websocket(
    live_server_url, committed_personas, fake_llm, plan_on, settings
):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    from asgiref.sync import sync_to_async
    from websockets.asyncio.client import connect

    from tests.ws.conftest import closed_code

    alpha = committed_personas["alpha"]
    url = live_server_url.url
    agent = await sync_to_async(llm_agent_for)(alpha, fake_llm)
    await sync_to_async(plan_on)(alpha, max_streams_per_key=1)
    await sync_to_async(wait_for_plan)(url, alpha.user_key, "max_streams_per_key", 1)
    fake_llm.script(agent.key, {"reply": "a b c d e f", "chunks": 6, "chunk_delay": 0.5})
    path = f"/agents/{agent.agent.slug}/execute/stream"
    ws_url = f"ws://127.0.0.1:{live_server_url.port}/agents/ws"
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async with client.stream(
            "POST", path, json={"input": {"message": "m"}}, headers=auth(alpha.user_key)
        ) as first:
            assert first.status_code == 200
            lines = first.aiter_lines()
            assert (await anext(lines)).startswith(("id:", "event:", ":"))
            second = await client.post(
                path, json={"input": {"message": "m"}}, headers=auth(alpha.user_key)
            )
            assert second.status_code == 429, second.text
            assert second.json()["error"]["code"] == "stream_limit_exceeded"
            assert second.headers["Retry-After"] == "5"
            async with connect(ws_url, open_timeout=10) as conn:
                await send(conn, {"type": "auth", "token": alpha.user_key})
                refused = await recv(conn)
                assert refused["type"] == "error" and refused["code"] == "stream_limit_exceeded"
                assert await closed_code(conn) == 4429
            # Another key of the tenant has a place of its own.
            async with connect(ws_url, open_timeout=10) as conn:
                await authed(conn, alpha.readonly_key)
            async for _ in lines:
                pass  # the first stream ends: its place is given back
        fake_llm.script(agent.key, {"reply": "again"})
        again = await client.post(
            path, json={"input": {"message": "m"}}, headers=auth(alpha.user_key)
        )
        assert again.status_code == 200, again.text


def test_a_plan_change_reaches_a_running_process_by_notify(committed_personas, plan_on):
    """The server's cache would keep a plan for an hour: only the plan_changes notification
    can make it see the change within the deadline."""
    alpha = committed_personas["alpha"]
    with live_server(PLAN_CACHE_SECONDS="3600") as server:
        plan_on(alpha, executions_per_day=10)
        # The first read may come before or after the change; from then on it is cached.
        wait_for_plan(server.url, alpha.readonly_key, "executions_per_day", 10)
        plan_on(alpha, executions_per_day=20)
        wait_for_plan(server.url, alpha.readonly_key, "executions_per_day", 20, deadline=5)


def test_an_mcp_session_stream_is_one_of_the_open_streams(
    live_server_url, committed_personas, plan_on
):
    alpha = committed_personas["alpha"]
    url = live_server_url.url
    plan_on(alpha, max_streams_per_tenant=1)
    wait_for_plan(url, alpha.user_key, "max_streams_per_tenant", 1)
    headers = {
        **auth(alpha.user_key),
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    session = httpx.post(f"{url}/mcp", json=INITIALIZE, headers=headers).headers["Mcp-Session-Id"]
    with httpx.Client(timeout=10) as client:
        stream_headers = {**headers, "Mcp-Session-Id": session}
        with client.stream("GET", f"{url}/mcp", headers=stream_headers) as first:
            assert first.status_code == 200
            # The tenant's one place is taken: an SSE stream is refused before anything runs.
            refused = client.post(
                f"{url}/agents/none/execute/stream",
                json={"input": {"message": "m"}},
                headers=auth(alpha.user_key),
            )
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "stream_limit_exceeded"
            second = client.get(f"{url}/mcp", headers=stream_headers)
            assert second.status_code == 429 and second.headers["Retry-After"] == "5"
        # Closed: the place is free again (the lease goes when the server sees the disconnect).
        end = time.monotonic() + 10
        while True:
            with client.stream("GET", f"{url}/mcp", headers=stream_headers) as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < end, "the closed stream's lease was not given back"
            time.sleep(0.05)
