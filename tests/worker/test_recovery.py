"""Lost workers: a SIGKILLed worker's run is restarted (then failed), SIGTERM drains, and the
sweeper finds executions whose job is gone."""

from __future__ import annotations

import datetime as dt
import signal
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.core import queue
from agents.core.queue import enqueue as execution_enqueue
from agents.models import Execution, ExecutionEvent
from agents.tasks import recover_orphaned_executions
from tests.worker.conftest import (
    RECOVERY_BOUND_SECONDS,
    create_queued,
    events_of,
    execution_of,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)

# FAST_WORKER_ENV: heartbeat 0.5 s, stalled after 2 s, sweep every 1 s, poll 0.2 s: recovery
# within 10 s (35 s with WORKER_TEST_TIMINGS=production, the defaults).


def test_a_run_killed_with_its_worker_is_restarted_and_completes(
    scripted_agent: Any, spawn_worker: Any, fake_llm: Any
) -> None:
    alpha = scripted_agent("alpha")
    schema = alpha.persona.schema
    fake_llm.script(
        alpha.key,
        {"reply": "x " * 40, "chunks": 40, "chunk_delay": 0.15},  # the run that dies
        {"reply": "second time lucky", "chunks": 2},  # the restart
    )
    doomed = spawn_worker()
    execution_id = create_queued(alpha)
    execution_enqueue(schema_name=schema, execution_id=execution_id)
    wait_for(
        lambda: any(e.type == "chunk" for e in events_of(schema, execution_id)), 10, "streaming"
    )

    doomed.signal(signal.SIGKILL)
    doomed.wait(5)
    killed_at = time.monotonic()
    assert execution_of(schema, execution_id).status == "running"
    spawn_worker()

    wait_for(lambda: execution_of(schema, execution_id).is_terminal, RECOVERY_BOUND_SECONDS)
    print(f"\nrecovered {time.monotonic() - killed_at:.2f} s after SIGKILL")
    execution = execution_of(schema, execution_id)
    assert execution.status == "completed", execution.error_message
    assert execution.output == "second time lucky"
    events = events_of(schema, execution_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # no gap, no duplicate
    restarts = [e for e in events if e.type == "reset" and e.data.get("reason") == "worker_lost"]
    assert len(restarts) == 1
    assert restarts[0].data["message"] == "restarted after worker loss"
    # Every client drops the text it had: the restarted run streams the answer from the start.
    assert restarts[0].data["discard_from_sequence"] == 1
    assert next(e.type for e in events if e.seq > restarts[0].seq) == "execution.started"
    assert events[-1].type == "complete"


def test_a_run_lost_twice_fails_worker_lost_with_a_terminal_event(
    scripted_agent: Any, spawn_worker: Any, fake_llm: Any
) -> None:
    alpha = scripted_agent("alpha")
    schema = alpha.persona.schema
    slow = {"reply": "y " * 40, "chunks": 40, "chunk_delay": 0.15}
    fake_llm.script(alpha.key, slow, slow)
    execution_id = create_queued(alpha)
    execution_enqueue(schema_name=schema, execution_id=execution_id)
    for attempt in (1, 2):
        worker = spawn_worker()
        wait_for(
            lambda n=attempt: (
                sum(e.type == "execution.started" for e in events_of(schema, execution_id)) == n
                and events_of(schema, execution_id)[-1].type == "chunk"
            ),
            RECOVERY_BOUND_SECONDS,
            f"run {attempt} streaming",
        )
        worker.signal(signal.SIGKILL)
        worker.wait(5)
    spawn_worker()

    wait_for(lambda: execution_of(schema, execution_id).is_terminal, RECOVERY_BOUND_SECONDS)
    execution = execution_of(schema, execution_id)
    assert (execution.status, execution.error_code) == ("failed", "worker_lost")
    events = events_of(schema, execution_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].type == "error"
    assert events[-1].data["code"] == "worker_lost"


def test_sigterm_lets_the_running_execution_finish_and_takes_no_new_job(
    scripted_agent: Any, spawn_worker: Any, fake_llm: Any
) -> None:
    alpha = scripted_agent("alpha")
    schema = alpha.persona.schema
    fake_llm.script(alpha.key, {"reply": "z " * 15, "chunks": 15, "chunk_delay": 0.1})
    worker = spawn_worker()
    in_flight = create_queued(alpha)
    execution_enqueue(schema_name=schema, execution_id=in_flight)
    wait_for(lambda: any(e.type == "chunk" for e in events_of(schema, in_flight)), 10, "running")

    worker.signal(signal.SIGTERM)
    time.sleep(0.3)
    later = create_queued(alpha)
    execution_enqueue(schema_name=schema, execution_id=later)

    assert worker.wait(10) == 0, worker.output()
    execution = execution_of(schema, in_flight)
    assert execution.status == "completed", execution.error_message
    assert execution.output == ("z " * 15)
    assert execution_of(schema, later).status == "queued"


def _finished_job_for(schema: str, execution_id: str) -> int:
    job_id = execution_enqueue(schema_name=schema, execution_id=execution_id)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE procrastinate_jobs SET status = 'failed' WHERE id = %s", [job_id])
    return job_id


def test_the_sweeper_restarts_requeues_and_fails_executions_whose_job_is_gone(
    scripted_agent: Any,
) -> None:
    alpha = scripted_agent("alpha")
    schema = alpha.persona.schema
    died_mid_run, lost_job, foreground, young, never_claimed = (
        create_queued(alpha) for _ in range(5)
    )
    long_ago = timezone.now() - dt.timedelta(hours=2)
    with schema_context(schema):
        # A streamed run stored pending by a web process that died before claiming it.
        Execution.objects.filter(pk=never_claimed).update(status="pending", created_at=long_ago)
        Execution.objects.filter(pk__in=[died_mid_run, foreground]).update(
            status="running", started_at=long_ago
        )
        Execution.objects.filter(pk__in=[died_mid_run, lost_job, foreground]).update(
            created_at=long_ago
        )
        ExecutionEvent.objects.create(
            execution_id=died_mid_run, seq=1, type="execution.started", data={}
        )
    _finished_job_for(schema, died_mid_run)

    counts = async_to_sync(recover_orphaned_executions)()

    assert counts == {"restart": 1, "requeue": 2, "failed": 1}
    assert queue.execution_job_ids(schema, never_claimed, ["todo"])  # runs as accepted
    assert execution_of(schema, died_mid_run).status == "queued"
    assert [e.type for e in events_of(schema, died_mid_run)] == ["execution.started", "reset"]
    assert queue.execution_job_ids(schema, died_mid_run, ["todo"])  # a fresh job waits
    assert execution_of(schema, lost_job).status == "queued"
    assert queue.execution_job_ids(schema, lost_job, ["todo"])
    failed = execution_of(schema, foreground)
    assert (failed.status, failed.error_code) == ("failed", "worker_lost")
    assert events_of(schema, foreground)[-1].type == "error"
    # Just queued and waiting for its job to be written: left alone.
    assert execution_of(schema, young).status == "queued"
    assert not queue.execution_job_ids(schema, young)


def test_past_the_shutdown_timeout_the_worker_leaves_its_run_to_the_next_worker(
    scripted_agent: Any, spawn_worker: Any, fake_llm: Any
) -> None:
    alpha = scripted_agent("alpha")
    schema = alpha.persona.schema
    fake_llm.script(
        alpha.key,
        {"reply": "q " * 40, "chunks": 40, "chunk_delay": 0.15},
        {"reply": "picked up", "chunks": 1},
    )
    worker = spawn_worker(WORKER_SHUTDOWN_TIMEOUT_SECONDS="0.5")
    execution_id = create_queued(alpha)
    execution_enqueue(schema_name=schema, execution_id=execution_id)
    wait_for(lambda: any(e.type == "chunk" for e in events_of(schema, execution_id)), 10, "running")

    worker.signal(signal.SIGTERM)
    assert worker.wait(5) == 3, worker.output()  # forced exit, the run left as it was
    assert execution_of(schema, execution_id).status == "running"
    spawn_worker()

    wait_for(lambda: execution_of(schema, execution_id).is_terminal, RECOVERY_BOUND_SECONDS)
    execution = execution_of(schema, execution_id)
    assert (execution.status, execution.output) == ("completed", "picked up")
    assert [e.type for e in events_of(schema, execution_id)].count("cancelled") == 0
