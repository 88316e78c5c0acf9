"""Executions end to end: the Django service drives the engine against the fake LLM server
over real HTTP, and stores the run, its events, usage and cost."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from agents.models import Execution, ExecutionEvent, ModelPrice
from config.errors import NotFound
from tests.agents.conftest import make_agent, make_credential
from tests.runs import principal_for, run, start


@pytest.fixture
def llm(fake_llm, settings, in_alpha):
    """An OpenAI-compatible credential on the fake server, with a key unique to the test."""
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    key = f"sk-test-{uuid.uuid4().hex}"
    credential = make_credential(kind="openai", base_url=f"{fake_llm.url}/v1", api_key=key)
    return fake_llm, key, credential


def events_of(execution: Execution) -> list[ExecutionEvent]:
    return list(ExecutionEvent.objects.filter(execution=execution).order_by("seq"))


def test_completed_run_stores_output_usage_cost_and_events(in_alpha, llm):
    fake, key, credential = llm
    fake.script(key, {"reply": "Hello there, world of agents", "chunks": 4})
    ModelPrice.objects.create(
        model="fake-model", input_per_million=Decimal("1000"), output_per_million=Decimal("2000")
    )
    agent = make_agent(credential, in_alpha.schema, system_prompt="You are terse.")
    execution = run(in_alpha.schema, agent, message="Say hello")
    assert execution.status == "completed"
    assert execution.output == "Hello there, world of agents"
    assert execution.model_used and execution.requested_model == "fake-model"
    assert execution.input_tokens > 0 and execution.output_tokens > 0
    expected = (
        Decimal(execution.input_tokens) * 1000 + Decimal(execution.output_tokens) * 2000
    ) / Decimal(1_000_000)
    assert execution.cost == expected
    assert execution.duration_ms is not None and execution.completed_at is not None
    assert (
        execution.context["tenant_id"] == in_alpha.schema
        and execution.context["execution_id"] == execution.id
    )
    events = events_of(execution)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    types = [e.type for e in events]
    assert types[0] == "execution.started" and types[-1] == "complete"
    chunks = [e for e in events if e.type == "chunk"]
    assert len(chunks) == 1, "consecutive chunks are coalesced into one row"
    assert chunks[0].data["text"] == "Hello there, world of agents"
    sent = fake.requests(key)[-1]["json"]
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
    assert sent["messages"][-1]["content"] == "Say hello"


def test_prompt_template_and_output_mapping(in_alpha, llm):
    fake, key, credential = llm
    fake.script(key, {"reply": "summary text"})
    agent = make_agent(
        credential,
        in_alpha.schema,
        user_template="Summarise {topic} for {user_context.user_id}",
        input_mapping={"topic": "custom_context.topic"},
        output_mapping={"custom_context.summary": "output"},
    )
    execution = run(
        in_alpha.schema,
        agent,
        context={"user_context": {"user_id": "u-7"}, "custom_context": {"topic": "tides"}},
    )
    assert fake.requests(key)[-1]["json"]["messages"][-1]["content"] == "Summarise tides for u-7"
    assert execution.context["custom_context"]["summary"] == "summary text"
    assert execution.input_data["topic"] == "tides"


def test_missing_placeholder_fails_clearly_without_calling_the_model(in_alpha, llm):
    fake, key, credential = llm
    agent = make_agent(credential, in_alpha.schema, user_template="Hello {nobody}")
    execution = run(in_alpha.schema, agent, message="x")
    assert execution.status == "failed" and execution.error_code == "prompt_render_error"
    assert "nobody" in execution.error_message
    assert fake.requests(key) == []


def test_structured_output_is_parsed_and_validated(in_alpha, llm):
    fake, key, credential = llm
    fake.script(key, {"json": {"answer": 42}})
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
    }
    agent = make_agent(credential, in_alpha.schema, output_schema=schema)
    execution = run(in_alpha.schema, agent, message="the answer?")
    assert execution.status == "completed" and execution.output == {"answer": 42}


def test_server_errors_are_retried_and_every_attempt_recorded(in_alpha, llm):
    fake, key, credential = llm
    fake.script(key, {"status": 500}, {"status": 500}, {"reply": "third time lucky"})
    agent = make_agent(
        credential, in_alpha.schema, retry_max_attempts=3, retry_on_errors=["server_error"]
    )
    execution = run(in_alpha.schema, agent, message="go")
    assert execution.status == "completed" and execution.output == "third time lucky"
    assert [a["status"] for a in execution.attempts][-1] != "failed"
    assert len(execution.attempts) == 3 and execution.retry_count == 2
    assert [a["error_kind"] for a in execution.attempts[:2]] == ["server_error", "server_error"]


def test_permanent_failure_is_stored_with_its_error(in_alpha, llm):
    fake, key, credential = llm
    fake.script(key, {"status": 401, "message": "bad key"})
    agent = make_agent(credential, in_alpha.schema)
    execution = run(in_alpha.schema, agent, message="go")
    assert execution.status == "failed" and execution.error_code == "authentication"
    assert events_of(execution)[-1].type == "error"


def test_timeout_ends_the_run_as_timeout(in_alpha, llm):
    fake, key, credential = llm
    fake.script(key, {"hang_after_headers": True})
    agent = make_agent(credential, in_alpha.schema, retry_max_attempts=1)
    execution = run(in_alpha.schema, agent, message="go", timeout_seconds=1)
    assert execution.status == "timeout" and execution.error_code == "timeout"


def test_cancelling_the_caller_cancels_the_run_and_closes_upstream(in_alpha, llm):
    fake, key, credential = llm
    fake.script(key, {"reply": "a b c d e f g h", "chunks": 8, "chunk_delay": 0.5})
    agent = make_agent(credential, in_alpha.schema)

    async def scenario() -> None:
        handle = await start(in_alpha.schema, agent, message="go")
        caller = asyncio.create_task(handle.result())
        async for event in handle.events():
            if event is not None and event.type == "chunk":
                break
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller

    async_to_sync(scenario)()
    execution = Execution.objects.get(agent=agent)
    assert execution.status == "cancelled"
    assert fake.wait_for(key, lambda request: request.get("client_closed") is True) < 2
    stored = "".join(e.data.get("text", "") for e in events_of(execution) if e.type == "chunk")
    assert stored and "h" not in stored  # cut short: the last chunks were never streamed
    assert events_of(execution)[-1].type == "cancelled"


def test_agent_as_tool_runs_a_child_execution(in_alpha, llm, fake_llm):
    fake, key, credential = llm
    child_key = f"sk-test-{uuid.uuid4().hex}"
    child_credential = make_credential(
        kind="openai", base_url=f"{fake_llm.url}/v1", api_key=child_key
    )
    child = make_agent(child_credential, in_alpha.schema, slug="helper-agent")
    parent = make_agent(
        credential,
        in_alpha.schema,
        tools=[
            {
                "name": "helper",
                "kind": "agent",
                "description": "asks the helper",
                "parameters": {"type": "object", "properties": {"message": {"type": "string"}}},
                "config": {"agent": "helper-agent"},
            }
        ],
    )
    fake.script(
        key,
        {"tool_calls": [{"name": "helper", "arguments": {"message": "what is 2+2?"}}]},
        {"reply": "The helper says 4."},
    )
    fake.script(child_key, {"reply": "4"})
    execution = run(in_alpha.schema, parent, message="ask the helper")
    assert execution.status == "completed" and execution.output == "The helper says 4."
    child_run = Execution.objects.get(agent=child)
    assert child_run.parent_id == execution.id and child_run.output == "4"
    types = [e.type for e in events_of(execution)]
    assert "tool_call" in types and "tool_result" in types


def test_provider_key_never_appears_in_stored_records(in_alpha, llm):
    fake, key, credential = llm
    fake.script(key, {"status": 401, "message": f"invalid api key {key}"})
    agent = make_agent(credential, in_alpha.schema)
    execution = run(in_alpha.schema, agent, message="go")
    stored = json.dumps(
        [
            execution.output,
            execution.error_message,
            execution.attempts,
            execution.context,
            [e.data for e in events_of(execution)],
        ]
    )
    assert key not in stored


def test_other_tenant_cannot_run_the_agent(alpha, bravo, llm):
    _, _, credential = llm
    with schema_context(alpha.schema):
        agent = make_agent(credential, alpha.schema)
    with pytest.raises(NotFound):
        run(bravo.schema, agent, message="go")


def test_a_blocking_execution_costs_seven_queries(in_alpha):
    agent = make_agent(make_credential(kind="echo"), in_alpha.schema)
    caller = principal_for(in_alpha.schema)  # the middleware's work, not the run's
    with CaptureQueriesContext(connection) as captured:
        execution = run(in_alpha.schema, agent, message="count my queries", principal=caller)
    assert execution.status == "completed" and execution.output
    statements = [q["sql"].split()[0] for q in captured.captured_queries]
    work = [s for s in statements if s not in {"SET", "SAVEPOINT", "RELEASE"}]
    # agent+credential, prices, INSERT execution with its audit entry (execution.start, one
    # round trip, in the admission's transaction: the chain is computed by the table's
    # trigger), then one statement (agents.core.finish): UPDATE execution, INSERT events (a
    # quick blocking run writes its whole log with its end) and the usage counters
    assert len(work) <= 4, statements
    assert statements[-1] == "WITH", statements
    assert statements.count("SET") <= 2, statements
