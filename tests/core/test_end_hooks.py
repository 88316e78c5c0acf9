"""End hooks: whoever ends a run (its finish, a cancel, the sweeper) calls the hook the run
names, once, in the transaction that stores the end; a failing hook does not cost the run its
end; a caller cannot name a hook."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync

from agents.core import cancel_execution
from agents.core.cancel import end_running
from agents.core.hooks import register_run_ended
from agents.core.requests import RunRequest, parse_run_request
from agents.core.start import run_request
from agents.models import Execution, ExecutionStatus
from config.errors import ValidationFailed
from tests.agents.conftest import make_agent, make_credential
from tests.runs import principal_for

ENDED: list[tuple[str, str, bool]] = []


def _record(execution: Execution) -> None:
    from django.db import connection

    ENDED.append((execution.pk, execution.status, connection.in_atomic_block))


def _explode(execution: Execution) -> None:
    raise RuntimeError("a broken hook")


register_run_ended("tests.record", _record)
register_run_ended("tests.explode", _explode)


@pytest.fixture(autouse=True)
def _fresh() -> None:
    ENDED.clear()


def _start(schema: str, agent: Any, mode: str, notify: str) -> Execution:
    """Start a run naming the hook; a blocking one is awaited to its end."""
    request = RunRequest(agent_ref=agent.id, message="hi", mode=mode, notify=notify)  # type: ignore[arg-type]
    principal = principal_for(schema)

    async def go() -> Execution:
        handle = await run_request(principal=principal, request=request)
        return await handle.result() if mode == "blocking" else handle.execution

    return async_to_sync(go)()


def test_a_finished_run_calls_its_hook_once_inside_the_end_transaction(in_alpha: Any) -> None:
    agent = make_agent(make_credential(kind="echo"), in_alpha.schema)
    execution = _start(in_alpha.schema, agent, "blocking", "tests.record")
    assert execution.status == "completed"
    assert ENDED == [(execution.pk, "completed", True)]


def test_cancelled_and_failed_ends_call_it_too(in_alpha: Any) -> None:
    agent = make_agent(make_credential(kind="echo"), in_alpha.schema)
    queued = _start(in_alpha.schema, agent, "background", "tests.record")
    cancel_execution(schema_name=in_alpha.schema, execution=queued, actor="tests")
    lost = _start(in_alpha.schema, agent, "background", "tests.record")
    Execution.objects.filter(pk=lost.pk).update(status=ExecutionStatus.RUNNING)
    assert end_running(lost.pk, code="worker_lost", message="gone")
    assert not end_running(lost.pk, code="worker_lost", message="gone")  # once only
    assert ENDED == [(queued.pk, "cancelled", True), (lost.pk, "failed", True)]


def test_a_failing_hook_does_not_cost_the_run_its_end(in_alpha: Any) -> None:
    agent = make_agent(make_credential(kind="echo"), in_alpha.schema)
    execution = _start(in_alpha.schema, agent, "blocking", "tests.explode")
    execution.refresh_from_db()
    assert execution.status == "completed" and execution.output


def test_a_caller_cannot_name_a_hook() -> None:
    with pytest.raises(ValidationFailed, match=r"^execution_config\.notify: unknown field"):
        parse_run_request({"execution_config": {"notify": "tests.record"}}, agent_ref="a")
    assert parse_run_request({}, agent_ref="a").notify is None
