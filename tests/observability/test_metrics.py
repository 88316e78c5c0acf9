"""Prometheus metrics from live processes: two web servers share one multiprocess directory and
one scrape shows their sum; /metrics is refused without its token (and absent without one
configured); the numbers match what was run."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django_tenants.utils import schema_context
from prometheus_client.parser import text_string_to_metric_families

from agents.models import Execution
from tests.api.conftest import auth, llm_agent_for
from tests.observability.conftest import logged_server

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-token-for-tests"


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_two_processes_one_scrape_counts_match_what_ran(
    committed_personas, fake_llm, settings, tmp_path: Path, clean_queue
):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    alpha, bravo = committed_personas["alpha"], committed_personas["bravo"]
    agent = llm_agent_for(alpha, fake_llm)
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "METRICS_TOKEN": TOKEN}
    with (
        logged_server(tmp_path / "one.log", **env) as one,
        logged_server(tmp_path / "two.log", **env) as two,
    ):
        ids = []
        for server in (one, two):
            fake_llm.script(agent.key, {"reply": "four words of reply"})
            answer = httpx.post(
                f"{server.url}/agents/{agent.agent.slug}/execute",
                headers=auth(alpha.user_key),
                json={"input": {"message": "count me"}},
                timeout=20,
            )
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["execution_id"])
            # The other tenant does not see the run.
            other = httpx.get(f"{server.url}/executions/{ids[-1]}", headers=auth(bravo.user_key))
            assert other.status_code == 404
        # A background run with no worker: it waits in the queue.
        queued = httpx.post(
            f"{two.url}/agents/{agent.agent.slug}/execute",
            headers=auth(alpha.user_key),
            json={"input": {"message": "later"}, "execution_config": {"mode": "background"}},
        )
        assert queued.status_code in (200, 202), queued.text

        # Without the token, with a wrong one, or with a tenant's credential: refused.
        assert httpx.get(f"{one.url}/metrics").status_code == 401
        wrong = httpx.get(f"{one.url}/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "WWW-Authenticate" in wrong.headers
        assert httpx.get(f"{one.url}/metrics", headers=auth(alpha.admin_key)).status_code == 401
        # Valid on a tenant's host too.
        on_tenant_host = httpx.get(
            f"{one.url}/metrics",
            headers={"Authorization": f"Bearer {TOKEN}", "Host": f"{alpha.host}:{one.port}"},
        )
        assert on_tenant_host.status_code == 200

        samples = scrape(one.url)

    with schema_context(alpha.schema):
        rows = list(Execution.objects.filter(pk__in=ids))
    assert len(rows) == 2 and all(row.status == "completed" for row in rows)
    # Both processes' runs, in one scrape of one of them.
    assert value(samples, "cba_executions_total", status="completed", mode="blocking") == 2
    assert value(samples, "cba_tokens_total", direction="input") == sum(
        r.input_tokens for r in rows
    )
    assert value(samples, "cba_tokens_total", direction="output") == sum(
        r.output_tokens for r in rows
    )
    assert sum(r.output_tokens for r in rows) > 0
    assert Decimal(str(value(samples, "cba_cost_total"))).quantize(Decimal("0.000001")) == sum(
        (r.cost for r in rows), Decimal(0)
    ).quantize(Decimal("0.000001"))
    execute = {"method": "POST", "route": "/agents/<str:agent_id>/execute"}
    assert value(samples, "cba_http_requests_total", status="200", **execute) == 2
    assert value(samples, "cba_http_request_duration_seconds_count", **execute) >= 2
    detail = {"method": "GET", "route": "/executions/<str:execution_id>", "status": "404"}
    assert value(samples, "cba_http_requests_total", **detail) == 2
    # Route templates, never raw paths.
    routes = {dict(labels).get("route", "") for _, labels in samples}
    assert not any(agent.agent.slug in route or ids[0] in route for route in routes)
    assert value(samples, "cba_queue_jobs", queue="executions") == 1
    assert value(samples, "cba_queue_oldest_job_age_seconds", queue="executions") >= 0
    assert value(samples, "cba_open_streams") == 0  # nothing streams any more


def test_provider_errors_and_an_open_breaker(
    committed_personas, fake_llm, settings, tmp_path: Path
):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    alpha = committed_personas["alpha"]
    agent = llm_agent_for(alpha, fake_llm)
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "METRICS_TOKEN": TOKEN}
    # The breaker opens once 10 calls in its window have failed (agents.engine.breaker).
    fake_llm.script(agent.key, *[{"status": 500, "message": "down"}] * 10)
    with logged_server(tmp_path / "one.log", **env) as server:
        for _ in range(11):
            answer = httpx.post(
                f"{server.url}/agents/{agent.agent.slug}/execute",
                headers=auth(alpha.user_key),
                json={"input": {"message": "x"}},
                timeout=20,
            )
            assert answer.status_code in (200, 502, 503), answer.text
        samples = scrape(server.url)
    assert value(samples, "cba_provider_errors_total", provider="openai", kind="server_error") == 10
    assert value(samples, "cba_provider_errors_total", provider="openai", kind="circuit_open") == 1
    breaker = f"{alpha.schema}:{agent.credential.pk}"
    assert value(samples, "cba_circuit_breaker_state", breaker=breaker) == 2
    assert value(samples, "cba_executions_total", status="failed", mode="blocking") == 11


def test_metrics_do_not_exist_without_a_token(client, settings):
    settings.METRICS_TOKEN = ""
    answer = client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything")
    assert answer.status_code == 404
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401


def test_stale_files_of_dead_processes_are_removed(tmp_path: Path):
    import os
    import subprocess
    import sys

    from config.metrics import remove_stale_files

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    (tmp_path / f"counter_{dead_pid}.db").write_bytes(b"")
    (tmp_path / f"counter_{os.getpid()}.db").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("kept")
    assert remove_stale_files(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{os.getpid()}.db", "notes.txt"]
    )


def test_a_scrape_drops_live_gauges_of_dead_processes_but_keeps_their_counters(tmp_path: Path):
    import subprocess
    import sys

    from config.metrics import remove_stale_files

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    for name in (f"gauge_livemax_{pid}.db", f"counter_{pid}.db"):
        (tmp_path / name).write_bytes(b"")
    assert remove_stale_files(tmp_path, "gauge_live*.db") == 1
    assert [p.name for p in tmp_path.iterdir()] == [f"counter_{pid}.db"]


def test_mcp_requests_are_counted_like_any_other(committed_personas, tmp_path: Path):
    """/mcp is served in front of Django's middleware: it is counted and timed there too."""
    from tests.mcp.conftest import INITIALIZE

    alpha = committed_personas["alpha"]
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "METRICS_TOKEN": TOKEN}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with logged_server(tmp_path / "mcp.log", **env) as server:
        opened = httpx.post(
            f"{server.url}/mcp", json=INITIALIZE, headers={**headers, **auth(alpha.user_key)}
        )
        assert opened.status_code == 200, opened.text
        assert httpx.post(f"{server.url}/mcp", json=INITIALIZE, headers=headers).status_code == 401
        samples = scrape(server.url)
    mcp = {"method": "POST", "route": "/mcp"}
    assert value(samples, "cba_http_requests_total", status="200", **mcp) == 1
    assert value(samples, "cba_http_requests_total", status="401", **mcp) == 1
    assert value(samples, "cba_http_request_duration_seconds_count", **mcp) == 2


async def test_open_streams_are_counted_while_open(committed_personas, tmp_path: Path):
    """Every tenant's streams count, capped by a plan or not (alpha has no plan here): a
    WebSocket connection is one open stream until it closes."""
    import asyncio
    import time

    from asgiref.sync import sync_to_async
    from websockets.asyncio.client import connect

    from tests.ws.conftest import authed

    alpha = committed_personas["alpha"]
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "METRICS_TOKEN": TOKEN}

    async def until_open(url: str, wanted: float) -> None:
        end = time.monotonic() + 10
        seen = None
        while time.monotonic() < end:
            seen = value(await sync_to_async(scrape)(url), "cba_open_streams")
            if seen == wanted:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"cba_open_streams is {seen}, wanted {wanted}")

    with logged_server(tmp_path / "streams.log", **env) as server:
        await until_open(server.url, 0)
        async with connect(f"ws://127.0.0.1:{server.port}/agents/ws", open_timeout=10) as conn:
            await authed(conn, alpha.user_key)
            await until_open(server.url, 1)
        await until_open(server.url, 0)
