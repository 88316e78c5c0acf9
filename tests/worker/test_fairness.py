"""Fair scheduling across tenants: queue positions, a light tenant passing a heavy tenant's
burst, and the per-tenant cap on running executions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django_tenants.utils import schema_context

from agents.core.queue import enqueue as execution_enqueue
from agents.core.queue import execution_job_ids
from agents.core.queue import queue_position as execution_queue_position
from agents.models import Execution
from tests.worker.conftest import create_queued, execution_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def submit(scripted: Any) -> str:
    """What the API does for a background run: store it queued, then enqueue it."""
    execution_id = create_queued(scripted)
    execution_enqueue(schema_name=scripted.persona.schema, execution_id=execution_id)
    return execution_id


def _priority(schema: str, execution_id: str) -> int:
    from django.db import connection

    (job_id,) = execution_job_ids(schema, execution_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT priority FROM procrastinate_jobs WHERE id = %s", [job_id])
        return int(cursor.fetchone()[0])


def test_a_light_tenant_goes_ahead_of_a_heavy_backlog_and_positions_stay_private(
    scripted_agent: Any,
) -> None:
    alpha, bravo = scripted_agent("alpha"), scripted_agent("bravo")
    heavy = [submit(alpha) for _ in range(3)]
    light = submit(bravo)

    # Workers take the highest priority first: bravo's one job passes alpha's second and third.
    priorities = [_priority(alpha.persona.schema, e) for e in heavy]
    assert priorities == sorted(priorities, reverse=True)
    assert priorities[1] < _priority(bravo.persona.schema, light) <= priorities[0]
    # A tenant's queue position counts its own jobs only: how busy others are is not its
    # business (bravo's job is first of bravo's, whatever alpha has waiting).
    positions = [execution_queue_position(alpha.persona.schema, e) for e in heavy]
    assert positions == [1, 2, 3]
    assert execution_queue_position(bravo.persona.schema, light) == 1
    # Another tenant's schema never finds the job; an unknown execution has no place.
    assert execution_queue_position(bravo.persona.schema, heavy[0]) is None
    assert execution_queue_position(alpha.persona.schema, "exec_unknown") is None


def _max_overlap(intervals: list[tuple[dt.datetime, dt.datetime]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in edges:  # at equal times an end (-1) sorts before a start (+1)
        running += step
        peak = max(peak, running)
    return peak


def test_a_burst_does_not_starve_another_tenant_and_the_cap_holds(
    scripted_agent: Any, spawn_worker: Any, fake_llm: Any
) -> None:
    alpha, bravo = scripted_agent("alpha"), scripted_agent("bravo")
    step = {"reply": "a b c", "chunks": 3, "chunk_delay": 0.1}
    fake_llm.script(alpha.key, *[step] * 20)
    fake_llm.script(bravo.key, step)
    spawn_worker(WORKER_CONCURRENCY="4", TENANT_MAX_CONCURRENT_EXECUTIONS="2")

    burst = [submit(alpha) for _ in range(20)]
    with schema_context(alpha.persona.schema):
        waiting = set(
            Execution.objects.filter(pk__in=burst, status="queued").values_list("pk", flat=True)
        )
    light = submit(bravo)

    def all_done() -> bool:
        return execution_of(bravo.persona.schema, light).is_terminal and all(
            execution_of(alpha.persona.schema, e).is_terminal for e in burst
        )

    wait_for(all_done, 30, "every execution finished")
    heavy = [execution_of(alpha.persona.schema, e) for e in burst]
    assert {e.status for e in heavy} == {"completed"}
    bravo_run = execution_of(bravo.persona.schema, light)
    assert bravo_run.status == "completed"
    later = sum(e.started_at > bravo_run.started_at for e in heavy)
    overtaken = sum(e.started_at < bravo_run.started_at for e in heavy if e.pk in waiting)
    print(
        f"\nbravo's one execution started before {later} of alpha's 20; alpha had "
        f"{len(waiting)} waiting when it arrived, {overtaken} of which started first"
    )
    assert len(waiting) >= 10  # there was a real backlog to jump
    # Between the snapshot of the backlog and bravo's submit, alpha's two running runs (the
    # tenant cap) may end together and free two slots: no more may go before bravo.
    assert overtaken <= 2
    assert later >= 12
    intervals = [(e.started_at, e.completed_at) for e in heavy]
    assert _max_overlap(intervals) == 2  # the cap is used, and never passed
