"""``manage.py worker`` through a PostgreSQL restart and a connection cut: it stays up, logs the
outage once, and runs what is accepted afterwards; cancels and live streams work again."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ROOT
from tests.outage.conftest import (
    FAST_WORKER_ENV,
    LiveProcess,
    OutageSite,
    PrivatePostgres,
    wait_until,
)

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
# Longer than any outage these tests make (the fast test default is 2 s).
STALLED_AFTER_SECONDS = "10"


def _headers(site: OutageSite) -> dict[str, str]:
    return {"Authorization": f"Bearer {site.user_key}"}


def keep_down(cluster: PrivatePostgres, worker: LiveProcess, seconds: float) -> None:
    """Stop the database for ``seconds``, checking all along that the worker stays up."""
    cluster.stop()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert worker.alive(), f"the worker died during the outage:\n{worker.log()}"
        time.sleep(0.1)
    cluster.start()


def accept_background(client: httpx.Client, site: OutageSite, message: str) -> str:
    """POST a background run; a 503 (a dead pooled connection met just after the restart)
    is retried as its Retry-After invites."""

    def post() -> httpx.Response | None:
        response = client.post(
            f"/agents/{site.agent_id}/execute",
            headers=_headers(site),
            json={"input": {"message": message}, "execution_config": {"mode": "background"}},
        )
        return None if response.status_code == 503 else response

    response = wait_until(post, 10, "POST accepted")
    assert response.status_code == 202, response.text[:300]
    return str(response.json()["execution_id"])


def execution(client: httpx.Client, site: OutageSite, execution_id: str) -> dict[str, Any]:
    response = client.get(f"/executions/{execution_id}", headers=_headers(site))
    assert response.status_code in (200, 503), response.text[:300]
    return response.json() if response.status_code == 200 else {}


def wait_terminal(
    client: httpx.Client, site: OutageSite, execution_id: str, timeout: float
) -> dict[str, Any]:
    return wait_until(
        lambda: (body := execution(client, site, execution_id)).get("status") in TERMINAL and body,
        timeout,
        f"execution {execution_id} terminal",
    )


def test_the_worker_survives_a_restart_and_runs_work_accepted_after_it(
    outage_site: OutageSite, live_web: LiveProcess, live_worker: Any, fake_llm: Any
) -> None:
    worker = live_worker()
    keep_down(outage_site.cluster, worker, 5.0)
    fake_llm.script(outage_site.llm_key, {"reply": "after the restart"})
    with httpx.Client(base_url=live_web.url, timeout=30) as client:
        execution_id = accept_background(client, outage_site, "hello again")
        done = wait_terminal(client, outage_site, execution_id, 30)
    assert done["status"] == "completed", done
    assert done["output"] == "after the restart"
    assert worker.alive()
    log = worker.story()
    # Once when it started, once when it ended: not once per attempt.
    assert log.count("database unreachable") == 1, log
    assert log.count("database reachable again") == 1, log
    assert "Side task" not in log and "stopping worker" not in log, log


def _listening_hubs(cluster: PrivatePostgres) -> int:
    rows = cluster.query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query = %s",
        ["outage", "LISTEN execution_cancel"],
    )
    return int(rows[0][0])


def test_cancels_and_live_streams_work_again_after_an_outage(
    outage_site: OutageSite, live_web: LiveProcess, live_worker: Any, fake_llm: Any
) -> None:
    # Only notifications cancel quickly here: the runs' own backstop check is made rare.
    worker = live_worker(WORKER_CANCEL_CHECK_SECONDS="60")
    # The web process starts its hub with its first stream.
    fake_llm.script(outage_site.llm_key, {"reply": "before"})
    with httpx.Client(base_url=live_web.url, timeout=30) as client:
        before = accept_background(client, outage_site, "before")
        attach = f"/agents/{outage_site.agent_id}/executions/{before}/stream"
        assert "[DONE]" in client.get(attach, headers=_headers(outage_site)).text
    wait_until(lambda: _listening_hubs(outage_site.cluster) >= 2, 10, "web and worker hubs")
    keep_down(outage_site.cluster, worker, 3.0)
    # Both event hubs (web and worker) reconnect their LISTEN by themselves.
    wait_until(lambda: _listening_hubs(outage_site.cluster) >= 2, 15, "hubs listening again")

    chunks = 8
    fake_llm.script(
        outage_site.llm_key,
        {"reply": " ".join(f"w{i}" for i in range(chunks)), "chunks": chunks, "chunk_delay": 0.6},
    )
    with httpx.Client(base_url=live_web.url, timeout=30) as client:
        execution_id = accept_background(client, outage_site, "stream")
        wait_until(
            lambda: execution(client, outage_site, execution_id).get("status") == "running",
            15,
            "run started",
        )
        latencies = []
        with client.stream(
            "GET",
            f"/agents/{outage_site.agent_id}/executions/{execution_id}/stream",
            headers=_headers(outage_site),
        ) as stream:
            event = ""
            for line in stream.iter_lines():
                if line == "data: [DONE]":
                    break
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "chunk":
                    latencies.append(_age_of_last_chunk(outage_site, execution_id))
                elif not line:
                    event = ""
        assert wait_terminal(client, outage_site, execution_id, 10)["status"] == "completed"

        # A notification wakes the stream at once; polling alone would take ~0.5 s a chunk.
        live = latencies[len(latencies) // 2 :]
        assert live and statistics.median(live) < 0.3, latencies

        fake_llm.script(
            outage_site.llm_key,
            {"reply": "x " * 200, "chunks": 200, "chunk_delay": 0.1},
        )
        execution_id = accept_background(client, outage_site, "to cancel")
        wait_until(
            lambda: execution(client, outage_site, execution_id).get("status") == "running",
            15,
            "run started",
        )
        asked = time.monotonic()
        cancel = client.post(f"/executions/{execution_id}/cancel", headers=_headers(outage_site))
        assert cancel.status_code in (200, 202), cancel.text[:300]
        assert wait_terminal(client, outage_site, execution_id, 10)["status"] == "cancelled"
        assert time.monotonic() - asked < 3
    assert worker.alive()


def _age_of_last_chunk(site: OutageSite, execution_id: str) -> float:
    rows = site.cluster.query(
        f'SELECT extract(epoch FROM clock_timestamp() - max(created_at)) FROM "{site.schema}".'
        "agents_executionevent WHERE execution_id = %s AND type = 'chunk'",
        [execution_id],
    )
    return float(rows[0][0])


def test_a_connection_cut_of_a_few_seconds_is_survived(
    outage_site: OutageSite, live_web: LiveProcess, live_worker: Any, fake_llm: Any
) -> None:
    """A PgBouncer restart or a network blip: the server stays up, but every session of the
    app is cut, and new ones too, for ~2.5 s."""
    # As in production (20 s against a 5 s heartbeat), a worker is taken for dead only after
    # a silence much longer than the blip. A silence longer than that is the sweeper's
    # business: see test_runs_during_outage.py.
    worker = live_worker(WORKER_STALLED_AFTER_SECONDS=STALLED_AFTER_SECONDS)
    until = time.monotonic() + 2.5
    cut = 0
    while time.monotonic() < until:
        cut += outage_site.cluster.terminate_sessions()
        time.sleep(0.05)
    assert cut >= 3  # web, worker pool, LISTEN connections at least
    fake_llm.script(outage_site.llm_key, {"reply": "after the blip"})
    with httpx.Client(base_url=live_web.url, timeout=30) as client:
        execution_id = accept_background(client, outage_site, "blip")
        done = wait_terminal(client, outage_site, execution_id, 30)
        assert client.get("/readyz").status_code == 200
    assert done["status"] == "completed" and done["output"] == "after the blip", done
    assert worker.alive() and live_web.alive()


def test_a_worker_started_while_the_database_is_down_waits_for_it(
    outage_site: OutageSite,
    live_web: LiveProcess,
    clean_outage_queue: None,
    fake_llm: Any,
    tmp_path: Path,
) -> None:
    outage_site.cluster.stop()
    logfile = tmp_path / "late-worker.log"
    with logfile.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "worker"],
            cwd=ROOT,
            env=outage_site.env(**FAST_WORKER_ENV),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    worker = LiveProcess(proc, logfile)
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert worker.alive(), f"the worker gave up:\n{worker.story()}"
            time.sleep(0.1)
        outage_site.cluster.start()
        fake_llm.script(outage_site.llm_key, {"reply": "late but there"})
        with httpx.Client(base_url=live_web.url, timeout=30) as client:
            execution_id = accept_background(client, outage_site, "late")
            done = wait_terminal(client, outage_site, execution_id, 60)
        assert done["status"] == "completed" and done["output"] == "late but there", done
        assert worker.alive()
    finally:
        assert worker.stop() == 0, worker.story()


def test_a_worker_pruned_during_an_outage_registers_again_and_keeps_its_runs(
    outage_site: OutageSite, live_web: LiveProcess, live_worker: Any, fake_llm: Any
) -> None:
    """Another worker that starts while this one's heartbeat is stale deletes its row
    ("prunes" it), which also strips its running jobs of their worker id. The worker notices
    at its next heartbeat (procrastinate's own heartbeat updated nothing, silently, and its
    next job fetch broke a foreign key and stopped it), registers again and gives its running
    job the new id. Whether a sweep got to that job first is the sweeper's business (see
    test_runs_during_outage.py)."""
    worker = live_worker(WORKER_STALLED_AFTER_SECONDS=STALLED_AFTER_SECONDS)
    fake_llm.script(outage_site.llm_key, {"reply": "x " * 20, "chunks": 20, "chunk_delay": 0.25})
    with httpx.Client(base_url=live_web.url, timeout=30) as client:
        execution_id = accept_background(client, outage_site, "pruned")
        wait_until(
            lambda: execution(client, outage_site, execution_id).get("status") == "running",
            15,
            "run started",
        )
        # What pruning does: the rows go, the running job loses its worker id.
        outage_site.cluster.query("DELETE FROM procrastinate_workers")
        wait_until(
            lambda: (
                outage_site.cluster.query("SELECT count(*) FROM procrastinate_workers")[0][0] == 2
            ),
            15,
            "registered again",
        )
        wait_terminal(client, outage_site, execution_id, 30)
    assert worker.alive()
    story = worker.story()
    assert "registered again" in story and "with its 1 running job(s)" in story, story
    assert "starting a new one" not in story, story
