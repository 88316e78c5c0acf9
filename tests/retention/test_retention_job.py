"""The retention purge as the job queue runs it: a periodic task, executed by a real worker."""

from __future__ import annotations

from django.db import connection

from agents.tasks import app
from tests.retention.conftest import runs_for, wipe
from tests.worker.conftest import wait_for


def test_the_retention_job_is_periodic():
    periodic = {p.periodic_id: p for p in app.periodic_registry.periodic_tasks.values()}
    assert periodic["retention"].task.name == "agents.purge_expired"


def test_a_worker_process_runs_the_retention_job(
    committed_personas, plan_on, spawn_worker, clean_queue
):
    alpha, bravo = committed_personas["alpha"], committed_personas["bravo"]
    plan_on(alpha, retention_days=30)
    alpha_runs, bravo_runs = runs_for(alpha), runs_for(bravo)
    try:
        old = [alpha_runs.make(days_old=45) for _ in range(3)]
        fresh = alpha_runs.make(days_old=2)
        # (Unfinished runs are not made here: the worker's sweeper would take them for lost
        # runs; test_purge.py shows the purge keeps them.)
        bravo_old = bravo_runs.make(days_old=45)  # bravo's plan keeps everything

        # Every second instead of hourly: the worker's own scheduler defers the job.
        worker = spawn_worker(RETENTION_BATCH_SIZE="2", RETENTION_CRON="* * * * * *")

        def finished() -> str | None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT status::text FROM public.procrastinate_jobs "
                    "WHERE task_name = 'agents.purge_expired' AND status IN ('succeeded', 'failed') "
                    "ORDER BY id LIMIT 1"
                )
                row = cursor.fetchone()
            return row[0] if row else None

        assert wait_for(finished, 20, "retention job finished") == "succeeded", worker.output()
        assert alpha_runs.ids() == {fresh}
        assert set(old).isdisjoint(alpha_runs.event_owners())
        assert bravo_runs.ids() == {bravo_old}
        assert "alpha: purged 3 execution(s)" in worker.output()
    finally:
        wipe(alpha)
        wipe(bravo)
