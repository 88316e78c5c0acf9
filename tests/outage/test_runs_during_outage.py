"""A background run that is executing while PostgreSQL restarts must end exactly once: one
terminal state, one terminal event, an event log without gaps or repeats that spells the answer
the provider gave, the provider asked once, and its job closed as succeeded.

This is the execution core's contract (the run, its event log, its job); the fixtures only
provide the restart.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.outage.conftest import LiveProcess, OutageSite, wait_until
from tests.outage.test_worker_outage import (
    STALLED_AFTER_SECONDS,
    accept_background,
    execution,
    keep_down,
    wait_terminal,
)

WORDS = 30


def _events(site: OutageSite, execution_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    rows = site.cluster.query(
        f'SELECT seq, type, data FROM "{site.schema}".agents_executionevent '
        "WHERE execution_id = %s ORDER BY seq",
        [execution_id],
    )
    return [(int(seq), str(kind), dict(data)) for seq, kind, data in rows]


def _job_statuses(site: OutageSite, execution_id: str) -> list[str]:
    rows = site.cluster.query(
        "SELECT status::text FROM procrastinate_jobs WHERE task_name = 'agents.run_execution' "
        "AND args->>'execution_id' = %s ORDER BY id",
        [execution_id],
    )
    return [str(row[0]) for row in rows]


def test_a_run_executing_during_a_restart_ends_exactly_once(
    outage_site: OutageSite, live_web: LiveProcess, live_worker: Any, fake_llm: Any
) -> None:
    # An outage shorter than the stalled-worker threshold (as 4 s is against the default
    # 20 s): the run's worker is never taken for dead.
    worker = live_worker(WORKER_STALLED_AFTER_SECONDS=STALLED_AFTER_SECONDS)
    answer = " ".join(f"w{i}" for i in range(WORDS))
    # ~9 s of streaming: it starts before the outage and ends after it.
    fake_llm.script(outage_site.llm_key, {"reply": answer, "chunks": WORDS, "chunk_delay": 0.3})
    with httpx.Client(base_url=live_web.url, timeout=30) as client:
        execution_id = accept_background(client, outage_site, "through the restart")
        wait_until(
            lambda: any(kind == "chunk" for _, kind, _ in _events(outage_site, execution_id)),
            15,
            "first chunk stored",
        )
        keep_down(outage_site.cluster, worker, 4.0)
        done = wait_terminal(client, outage_site, execution_id, 60)
        # Whatever the sweeper does next must not change it.
        wait_until(
            lambda: "doing" not in _job_statuses(outage_site, execution_id), 30, "job closed"
        )
        assert execution(client, outage_site, execution_id)["status"] == done["status"]

    events = _events(outage_site, execution_id)
    seqs = [seq for seq, _, _ in events]
    assert seqs == list(range(1, len(seqs) + 1)), f"gaps or repeats in the log: {seqs}"
    terminal = [kind for _, kind, _ in events if kind in ("complete", "error", "cancelled")]
    assert terminal == ["complete"], terminal
    assert done["status"] == "completed" and done["output"] == answer, done
    text = "".join(str(data.get("text", "")) for _, kind, data in events if kind == "chunk")
    assert text == answer
    assert len(fake_llm.requests(outage_site.llm_key)) == 1, "the provider was asked twice"
    assert _job_statuses(outage_site, execution_id) == ["succeeded"]
    assert worker.alive()
