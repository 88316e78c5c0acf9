"""The stored event log, followed live: order, resume, and cancellation across tasks."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from asgiref.sync import async_to_sync
from django_tenants.utils import schema_context

from agents.core import cancel_execution, follow_events, read_events
from agents.models import Execution
from tests.agents.conftest import make_agent, make_credential
from tests.runs import start


@pytest.fixture
def slow_agent(committed_personas, fake_llm, settings):
    alpha = committed_personas["alpha"]
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    key = f"sk-test-{uuid.uuid4().hex}"
    with schema_context(alpha.schema):
        credential = make_credential(kind="openai", base_url=f"{fake_llm.url}/v1", api_key=key)
        agent = make_agent(credential, alpha.schema)
    return alpha, agent, key


def test_a_follower_sees_every_event_live_in_order_and_stops_at_the_end(slow_agent, fake_llm):
    alpha, agent, key = slow_agent
    fake_llm.script(key, {"reply": "one two three four five six", "chunks": 6, "chunk_delay": 0.05})

    async def scenario() -> tuple[list, Execution]:
        handle = await start(alpha.schema, agent, mode="streamed", message="go")
        seen = [event async for event in follow_events(alpha.schema, handle.execution_id)]
        return seen, await handle.result()

    seen, execution = async_to_sync(scenario)()
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    assert seen[-1].type == "complete"
    assert (
        "".join(e.data["text"] for e in seen if e.type == "chunk") == "one two three four five six"
    )
    assert execution.status == "completed"


def test_resume_after_a_cursor_gives_the_rest_without_duplicates(slow_agent, fake_llm):
    alpha, agent, key = slow_agent
    fake_llm.script(key, {"reply": "alpha beta gamma", "chunks": 3})

    async def scenario() -> tuple[list, list]:
        handle = await start(alpha.schema, agent, mode="streamed", message="go")
        execution = await handle.result()
        everything = await read_events(alpha.schema, execution.id)
        resumed = [event async for event in follow_events(alpha.schema, execution.id, after=2)]
        return everything, resumed

    everything, resumed = async_to_sync(scenario)()
    assert [e.seq for e in resumed] == [e.seq for e in everything if e.seq > 2]


def test_cancel_request_stops_a_running_execution(slow_agent, fake_llm):
    alpha, agent, key = slow_agent
    fake_llm.script(key, {"reply": "w " * 40, "chunks": 40, "chunk_delay": 0.1})

    async def scenario() -> Execution:
        handle = await start(alpha.schema, agent, mode="streamed", message="go")
        async for event in handle.events():
            if event is not None and event.type == "chunk":
                break
        from tenants.context import in_schema

        running = await in_schema(alpha.schema, lambda: Execution.objects.get(agent=agent))
        receipt = await in_schema(
            alpha.schema,
            cancel_execution,
            schema_name=alpha.schema,
            execution=running,
            actor="tests",
        )
        assert receipt["cancel_requested"] is True
        # The run returns normally: it was the run that was cancelled, not its caller.
        return await asyncio.wait_for(handle.result(), 5)

    execution = async_to_sync(scenario)()
    assert execution.status == "cancelled"
    assert fake_llm.wait_for(key, lambda request: request.get("client_closed") is True) < 2


def test_an_idle_follower_reads_only_when_a_notification_wakes_it(
    slow_agent, fake_llm, monkeypatch
):
    """While the hub listens, a follower waiting between events costs no query: heartbeats
    come from its own clock, reads from NOTIFY. (Each follower polling once a second would be
    10,000 queries a second for 10,000 open streams.)"""
    from agents.core import follow
    from agents.core.hub import get_hub

    alpha, agent, key = slow_agent
    # Three events far apart: the follower spends most of the run idle.
    fake_llm.script(key, {"reply": "one two three", "chunks": 3, "chunk_delay": 1.5})
    reads = []
    real_read = follow._read_with_status

    def counted(schema_name: str, execution_id: str, after: int):
        reads.append(after)
        return real_read(schema_name, execution_id, after)

    monkeypatch.setattr(follow, "_read_with_status", counted)

    async def scenario() -> list:
        async with asyncio.timeout(10):
            await get_hub().wait_connected()
        handle = await start(alpha.schema, agent, mode="streamed", message="go")
        seen = []
        async with asyncio.timeout(20):
            async for event in follow_events(alpha.schema, handle.execution_id, idle=0.05):
                seen.append(event)
        await handle.result()
        return seen

    seen = async_to_sync(scenario)()
    events = [event for event in seen if event is not None]
    heartbeats = len(seen) - len(events)
    assert events[-1].type == "complete"
    assert heartbeats >= 20, heartbeats  # idle for seconds: a heartbeat every 0.05 s
    # One read to start, then one per wake-up: a commit's NOTIFY, at most one more when the
    # NOTIFY arrives after a read that already saw the row. None per heartbeat.
    assert len(reads) <= 2 * len(events) + 1, (len(reads), len(events), heartbeats)


def test_a_follower_of_a_run_that_ended_without_a_terminal_event_stops(committed_personas):
    """A run whose row says it ended but whose log has no terminal event (older rows) is
    handed over as it is, at the first read: nobody waits on it forever."""
    from agents.models import ExecutionEvent
    from tests.agents.conftest import make_agent, make_credential

    alpha = committed_personas["alpha"]
    with schema_context(alpha.schema):
        credential = make_credential(kind="openai", base_url="https://api.example.com/v1")
        agent = make_agent(credential, alpha.schema)
        execution = Execution.objects.create(agent=agent, agent_version=1, status="completed")
        ExecutionEvent.objects.create(execution=execution, seq=1, type="execution.started")

    async def scenario() -> list:
        async with asyncio.timeout(5):
            return [event async for event in follow_events(alpha.schema, execution.id)]

    seen = async_to_sync(scenario)()
    assert [(event.seq, event.type) for event in seen] == [(1, "execution.started")]


def test_a_follower_reads_its_tenant_s_log_whatever_the_connection_s_search_path(
    committed_personas,
):
    """The follower's read names its schema (no `SET search_path` round trip): left on another
    tenant's search path, the connection still reads alpha's log, and its path is untouched."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from agents.core import follow
    from agents.models import ExecutionEvent

    alpha, bravo = committed_personas["alpha"], committed_personas["bravo"]
    with schema_context(alpha.schema):
        agent = make_agent(make_credential(kind="echo"), alpha.schema)
        execution = Execution.objects.create(agent=agent, agent_version=1, status="running")
        ExecutionEvent.objects.create(execution=execution, seq=1, type="execution.started")
    with schema_context(bravo.schema):
        with connection.cursor() as cursor:
            cursor.execute("SHOW search_path")
            before = cursor.fetchone()[0]
        assert bravo.schema in before
        with CaptureQueriesContext(connection) as captured:
            ended, events = follow._read_with_status(alpha.schema, execution.id, 0)
        with connection.cursor() as cursor:
            cursor.execute("SHOW search_path")
            assert cursor.fetchone()[0] == before
    assert not ended and [(e.seq, e.type) for e in events] == [(1, "execution.started")]
    assert not [q for q in captured.captured_queries if q["sql"].startswith("SET")]
    # Another tenant's execution id is not found from alpha's schema (nothing leaks).
    assert follow._read_with_status(bravo.schema, execution.id, 0) == (True, [])
