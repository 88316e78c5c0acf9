"""Cancelling a parent stops its running child; whoever sees a terminal event finds the terminal
status (both are written in one transaction)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django_tenants.utils import schema_context

from agents.core import cancel_execution, follow_events
from agents.models import TERMINAL_STATUSES, Execution
from tenants.context import in_schema
from tests.agents.conftest import make_agent, make_credential
from tests.runs import start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def llm(committed_personas: Any, fake_llm: Any, settings: Any) -> Any:
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    alpha = committed_personas["alpha"]

    def credential() -> tuple[Any, str]:
        key = f"sk-test-{uuid.uuid4().hex}"
        with schema_context(alpha.schema):
            made = make_credential(kind="openai", base_url=f"{fake_llm.url}/v1", api_key=key)
        return made, key

    return alpha, credential


def test_cancelling_a_parent_stops_its_running_child(llm: Any, fake_llm: Any) -> None:
    alpha, credential = llm
    child_credential, child_key = credential()
    parent_credential, parent_key = credential()
    slug = f"helper-{uuid.uuid4().hex[:8]}"
    with schema_context(alpha.schema):
        child = make_agent(child_credential, alpha.schema, slug=slug)
        parent = make_agent(
            parent_credential,
            alpha.schema,
            tools=[
                {
                    "name": "helper",
                    "kind": "agent",
                    "parameters": {"type": "object", "properties": {"message": {"type": "string"}}},
                    "config": {"agent": slug},
                }
            ],
        )
    fake_llm.script(
        parent_key, {"tool_calls": [{"name": "helper", "arguments": {"message": "go"}}]}
    )
    fake_llm.script(child_key, {"reply": "z " * 50, "chunks": 50, "chunk_delay": 0.1})

    def child_run() -> Execution | None:
        return Execution.objects.filter(agent=child).first()

    async def scenario() -> tuple[Execution, Execution]:
        handle = await start(alpha.schema, parent, mode="streamed", message="ask the helper")
        running = None
        for _ in range(200):  # until the child has streamed something
            running = await in_schema(alpha.schema, child_run)
            if running is not None:
                async for event in follow_events(alpha.schema, running.id):
                    if event is not None and event.type == "chunk":
                        break
                break
            await asyncio.sleep(0.05)
        assert running is not None, "the child never started"
        parent_row = await in_schema(
            alpha.schema, lambda: Execution.objects.get(pk=handle.execution_id)
        )
        receipt = await in_schema(
            alpha.schema,
            cancel_execution,
            schema_name=alpha.schema,
            execution=parent_row,
            actor="tests",
        )
        assert set(receipt["executions"]) == {handle.execution_id, running.id}
        ended = await asyncio.wait_for(handle.result(), 10)
        for _ in range(100):
            child_now = await in_schema(alpha.schema, child_run)
            if child_now is not None and child_now.is_terminal:
                return ended, child_now
            await asyncio.sleep(0.05)
        raise AssertionError("the child did not stop")

    parent_end, child_end = async_to_sync(scenario)()
    assert parent_end.status == "cancelled"
    assert child_end.status == "cancelled" and child_end.parent_id == parent_end.id
    assert fake_llm.wait_for(child_key, lambda r: r.get("client_closed") is True) < 2
    assert len(fake_llm.requests(child_key)) == 1


def test_whoever_sees_the_terminal_event_finds_the_terminal_status(llm: Any, fake_llm: Any) -> None:
    alpha, credential = llm
    made, key = credential()
    with schema_context(alpha.schema):
        agent = make_agent(made, alpha.schema)
    runs = 20
    fake_llm.script(key, *[{"reply": "done", "chunks": 2}] * runs)

    def status_of(execution_id: str) -> str:
        return str(Execution.objects.values_list("status", flat=True).get(pk=execution_id))

    async def one() -> str:
        handle = await start(alpha.schema, agent, mode="streamed", message="go")
        async for event in follow_events(alpha.schema, handle.execution_id):
            if event is not None and event.terminal:
                # Read at once, with no wait: the status must already be there.
                return await in_schema(alpha.schema, status_of, handle.execution_id)
        raise AssertionError("no terminal event")

    async def scenario() -> list[str]:
        return list(await asyncio.gather(*(one() for _ in range(runs))))

    statuses = async_to_sync(scenario)()
    assert all(status in TERMINAL_STATUSES for status in statuses), statuses
