"""The web process through a PostgreSQL restart: 503 with Retry-After while the database is
gone, normal answers again afterwards, without restarting the web process."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.outage.conftest import LiveProcess, OutageSite, wait_until


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_database_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text[:300]
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert body["error"]["code"] == "database_unavailable"
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_requests_get_503_during_an_outage_and_normal_answers_after(
    outage_site: OutageSite, live_web: LiveProcess, fake_llm
) -> None:
    user = _headers(outage_site.user_key)
    execute = f"/agents/{outage_site.agent_id}/execute"
    with httpx.Client(base_url=live_web.url, timeout=30) as client:
        assert client.get("/agents", headers=user).status_code == 200
        assert client.get("/readyz").status_code == 200

        outage_site.cluster.stop()
        assert_database_unavailable(client.get("/agents", headers=user))
        assert_database_unavailable(
            client.post(execute, headers=user, json={"input": {"message": "hi"}})
        )
        started = time.monotonic()
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["Retry-After"]
        assert ready.json()["database"] == "unreachable"
        assert time.monotonic() - started < 3, "readyz must not hang on a dead database"

        outage_site.cluster.start()
        restarted = time.monotonic()
        # The first request after a restart may still meet a dead pooled connection (a fast
        # 503); the ones after it must not.
        wait_until(
            lambda: client.get("/agents", headers=user).status_code == 200, 10, "GET /agents"
        )
        assert client.get("/readyz").status_code == 200
        fake_llm.script(outage_site.llm_key, {"reply": "back"})
        answer = client.post(execute, headers=user, json={"input": {"message": "hi"}})
        assert answer.status_code == 200, answer.text[:300]
        assert answer.json()["output"] == "back"
        recovered_in = time.monotonic() - restarted
    assert live_web.alive(), "the web process must survive the outage"
    assert recovered_in < 5, f"recovery took {recovered_in:.1f}s"


def test_a_restart_costs_at_most_one_failed_request_however_full_the_pool(
    outage_site: OutageSite, live_web: LiveProcess, fake_llm
) -> None:
    """Every idle pooled connection dies with the restart; the first request to meet one has
    them all replaced, instead of each failing a request of its own."""
    user = _headers(outage_site.user_key)
    parallel = 8
    for _ in range(parallel):
        fake_llm.script(outage_site.llm_key, {"reply": "ok", "latency": 0.5})

    def blocking_run(_: int) -> int:
        # A blocking run holds its request's connection for the provider's latency: eight at
        # once leave eight idle connections in the pool afterwards.
        return httpx.post(
            f"{live_web.url}/agents/{outage_site.agent_id}/execute",
            headers=user,
            json={"input": {"message": "hi"}},
            timeout=30,
        ).status_code

    with ThreadPoolExecutor(parallel) as pool:
        assert list(pool.map(blocking_run, range(parallel))) == [200] * parallel
    sessions = outage_site.cluster.query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = %s",
        ["outage", "client backend"],
    )[0][0]
    assert sessions >= parallel // 2, "the pool should hold several idle connections"

    outage_site.cluster.stop()
    outage_site.cluster.start()
    with httpx.Client(base_url=live_web.url, timeout=30) as client:
        codes = [client.get("/agents", headers=user).status_code for _ in range(parallel + 4)]
    assert codes.count(200) >= len(codes) - 1, codes
    assert all(code == 200 for code in codes[1:]), codes


def test_a_connection_cut_without_a_restart_is_survived(
    outage_site: OutageSite, live_web: LiveProcess
) -> None:
    """What a PgBouncer restart or a network blip does: every session is cut, the server
    stays up."""
    user = _headers(outage_site.user_key)
    with httpx.Client(base_url=live_web.url, timeout=30) as client:
        assert client.get("/agents", headers=user).status_code == 200
        assert outage_site.cluster.terminate_sessions() >= 1
        statuses = [client.get("/agents", headers=user).status_code for _ in range(5)]
        assert statuses.count(503) <= 1 and statuses[-1] == 200, statuses
        assert client.get("/readyz").status_code == 200
    assert live_web.alive()
