"""End to end against the live server in another process: blocking runs, SSE streams, resume,
disconnects, background runs and concurrent idempotent requests."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from django_tenants.utils import schema_context

from agents.models import Execution
from tests.api.conftest import auth, sse_events


def _client(live_server_url) -> httpx.Client:
    return httpx.Client(base_url=live_server_url.url, timeout=20)


def _wait_status(schema: str, execution_id: str, wanted: set[str], timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        with schema_context(schema):
            status = Execution.objects.get(pk=execution_id).status
        if status in wanted:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{execution_id} stayed {status}")


def test_blocking_execute_over_http(live_server_url, live_agent, fake_llm):
    fake_llm.script(live_agent.key, {"reply": "live hello", "chunks": 2})
    with _client(live_server_url) as client:
        response = client.post(
            f"/agents/{live_agent.agent.id}/execute",
            headers=auth(live_agent.persona.user_key),
            json={"input": {"message": "hi"}},
        )
    assert response.status_code == 200, response.text
    assert response.json()["output"] == "live hello"
    assert int(response.headers["X-Platform-Overhead-Ms"]) >= 0


def test_sse_stream_then_attach_replays_and_resumes(live_server_url, live_agent, fake_llm):
    fake_llm.script(live_agent.key, {"reply": "one two\nthree four", "chunks": 4})
    headers = auth(live_agent.persona.user_key)
    with _client(live_server_url) as client:
        with client.stream(
            "POST",
            f"/agents/{live_agent.agent.id}/execute/stream",
            headers=headers,
            json={"input": {"message": "stream please"}},
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            location = response.headers["Location"]
            opening, *events = sse_events(response)
        # A comment first (the headers go out with it), then the events.
        assert (opening.event, opening.data) == (":", "stream open")
        ids = [e.id for e in events if e.id is not None]
        assert ids == list(range(1, len(ids) + 1))
        assert events[-1].data == "[DONE]" and events[-1].id is None
        kinds = [e.event for e in events[:-1]]
        assert kinds[0] == "execution.started" and kinds[-1] == "complete"
        text = "".join(e.data for e in events if e.event == "chunk")
        assert text == "one two\nthree four"  # chunk data is the text itself
        complete = next(e for e in events if e.event == "complete").json()
        assert complete["status"] == "completed" and complete["output"] == "one two\nthree four"
        execution_id = complete["execution_id"]
        assert location == f"/agents/{live_agent.agent.id}/executions/{execution_id}/stream"

        with client.stream("GET", location, headers=headers) as replay:
            _, *replayed = sse_events(replay)
        assert [(e.id, e.event, e.data) for e in replayed] == [
            (e.id, e.event, e.data) for e in events
        ]
        with client.stream("GET", location, headers={**headers, "Last-Event-ID": "2"}) as rest:
            resumed = sse_events(rest)
        assert [e.id for e in resumed if e.id is not None] == [i for i in ids if i > 2]
        assert resumed[-1].data == "[DONE]"
        with client.stream("GET", f"{location}?after={ids[-1]}", headers=headers) as end:
            assert [e.data for e in sse_events(end)] == ["stream open", "[DONE]"]


def test_client_disconnect_cancels_the_run_and_the_upstream_call(
    live_server_url, live_agent, fake_llm
):
    fake_llm.script(live_agent.key, {"reply": "w " * 60, "chunks": 60, "chunk_delay": 0.1})
    with _client(live_server_url) as client:
        with client.stream(
            "POST",
            f"/agents/{live_agent.agent.id}/execute/stream",
            headers=auth(live_agent.persona.user_key),
            json={"input": {"message": "long"}},
        ) as response:
            execution_id = response.headers["Location"].split("/")[-2]
            sse_events(response, stop_after="chunk")
    assert fake_llm.wait_for(live_agent.key, lambda r: r.get("client_closed") is True, 5) < 5
    schema = live_agent.persona.schema
    assert _wait_status(schema, execution_id, {"cancelled", "completed"}) == "cancelled"


def test_on_disconnect_continue_lets_the_run_finish(live_server_url, live_agent, fake_llm):
    fake_llm.script(live_agent.key, {"reply": "a b c d e f", "chunks": 6, "chunk_delay": 0.1})
    with _client(live_server_url) as client:
        with client.stream(
            "POST",
            f"/agents/{live_agent.agent.id}/execute/stream?on_disconnect=continue",
            headers=auth(live_agent.persona.user_key),
            json={"input": {"message": "keep going"}},
        ) as response:
            location = response.headers["Location"]
            sse_events(response, stop_after="chunk")
        execution_id = location.split("/")[-2]
        schema = live_agent.persona.schema
        assert _wait_status(schema, execution_id, {"completed", "cancelled"}) == "completed"
        with client.stream("GET", location, headers=auth(live_agent.persona.user_key)) as rest:
            events = sse_events(rest)
    assert "".join(e.data for e in events if e.event == "chunk") == "a b c d e f"
    with schema_context(schema):
        assert Execution.objects.get(pk=execution_id).output == "a b c d e f"


def _queue_background(client: httpx.Client, live_agent, headers: dict[str, str]) -> httpx.Response:
    """A background run; no worker runs in these tests, so it stays queued until cancelled."""
    return client.post(
        f"/agents/{live_agent.agent.id}/execute",
        headers=headers,
        json={"input": {"message": "later"}, "execution_config": {"mode": "background"}},
    )


def test_background_run_is_202_with_location_and_cancellable(live_server_url, live_agent):
    headers = auth(live_agent.persona.user_key)
    with _client(live_server_url) as client:
        response = _queue_background(client, live_agent, headers)
        assert response.status_code == 202
        execution_id = response.json()["execution_id"]
        assert response.headers["Location"].endswith(f"/executions/{execution_id}")
        # No worker runs in this test: the run stays queued until cancelled.
        assert client.get(response.headers["Location"], headers=headers).json()["status"] in {
            "queued",
            "running",
            "completed",
        }
        cancelled = client.post(f"/executions/{execution_id}/cancel", headers=headers)
        assert cancelled.status_code in (200, 202)
        assert cancelled.json()["cancel_requested"] in (True, False)
    status = _wait_status(live_agent.persona.schema, execution_id, {"cancelled", "completed"})
    assert status in {"cancelled", "completed"}


def test_cancel_endpoint_stops_a_streaming_run(live_server_url, live_agent, fake_llm):
    fake_llm.script(live_agent.key, {"reply": "x " * 60, "chunks": 60, "chunk_delay": 0.1})
    headers = auth(live_agent.persona.user_key)
    with _client(live_server_url) as client:
        with client.stream(
            "POST",
            f"/agents/{live_agent.agent.id}/execute/stream",
            headers=headers,
            json={"input": {"message": "long"}},
        ) as response:
            execution_id = response.headers["Location"].split("/")[-2]
            lines = response.iter_lines()
            sse_events(lines, stop_after="chunk")
            receipt = client.post(f"/executions/{execution_id}/cancel", headers=headers)
            assert receipt.status_code in (200, 202)
            rest = sse_events(lines)
    kinds = [e.event for e in rest]
    assert "cancelled" in kinds and rest[-1].data == "[DONE]"
    assert fake_llm.wait_for(live_agent.key, lambda r: r.get("client_closed") is True, 5) < 5


def test_concurrent_idempotent_requests_start_one_execution(live_server_url, live_agent, fake_llm):
    fake_llm.script(live_agent.key, {"reply": "only once", "latency": 0.5})
    key = f"key-{uuid.uuid4().hex}"
    headers = {**auth(live_agent.persona.user_key), "Idempotency-Key": key}
    body = {"input": {"message": "at once"}}

    def send(_: int) -> httpx.Response:
        with _client(live_server_url) as client:
            return client.post(f"/agents/{live_agent.agent.id}/execute", headers=headers, json=body)

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(send, range(6)))
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    assert len({r.json()["execution_id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 5
    assert len(fake_llm.requests(live_agent.key)) == 1
    with schema_context(live_agent.persona.schema):
        assert Execution.objects.filter(agent=live_agent.agent).count() == 1
    with _client(live_server_url) as client:
        later = client.post(f"/agents/{live_agent.agent.id}/execute", headers=headers, json=body)
        assert later.headers["Idempotent-Replayed"] == "true"
        other = client.post(
            f"/agents/{live_agent.agent.id}/execute",
            headers=headers,
            json={"input": {"message": "changed"}},
        )
        assert other.status_code == 409


def test_stream_with_a_used_key_replays_the_same_stream(live_server_url, live_agent, fake_llm):
    fake_llm.script(live_agent.key, {"reply": "streamed once", "chunks": 2})
    headers = {**auth(live_agent.persona.user_key), "Idempotency-Key": uuid.uuid4().hex}
    path = f"/agents/{live_agent.agent.id}/execute/stream"
    body = {"input": {"message": "once"}}
    with _client(live_server_url) as client:
        with client.stream("POST", path, headers=headers, json=body) as first:
            first_events = sse_events(first)
        with client.stream("POST", path, headers=headers, json=body) as second:
            assert second.headers["Idempotent-Replayed"] == "true"
            assert second.headers["Location"] == first.headers["Location"]
            second_events = sse_events(second)
    assert [(e.id, e.data) for e in second_events] == [(e.id, e.data) for e in first_events]
    assert first_events[-2].event == "complete", first_events
    assert len(fake_llm.requests(live_agent.key)) == 1


def test_huge_body_is_413_over_http(live_server_url, live_agent):
    body = b'{"input": {"message": "' + b"x" * 2_000_000 + b'"}}'
    headers = {**auth(live_agent.persona.user_key), "Content-Type": "application/json"}
    with _client(live_server_url) as client:
        for suffix in ("execute", "execute/stream"):
            response = client.post(
                f"/agents/{live_agent.agent.id}/{suffix}", headers=headers, content=body
            )
            assert response.status_code == 413, response.text
            assert response.json()["error"]["code"] == "payload_too_large"


def test_repeats_of_an_in_flight_key_wait_without_holding_database_connections(
    committed_personas, live_agent, fake_llm
):
    """Eight repeats of a key whose run is still going wait for it on a server whose pool has
    two connections: they hold none while waiting, so other requests are served meanwhile."""
    from tests.conftest import live_server

    fake_llm.script(live_agent.key, {"reply": "slow and once", "chunks": 6, "chunk_delay": 0.4})
    headers = {**auth(live_agent.persona.user_key), "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    path = f"/agents/{live_agent.agent.id}/execute"
    body = {"input": {"message": "once"}}
    with live_server(DATABASE_POOL_MAX_SIZE="2", IDEMPOTENCY_WAIT_SECONDS="20") as server:
        with httpx.Client(base_url=server.url, timeout=30) as client, ThreadPoolExecutor(9) as pool:
            first = pool.submit(client.post, path, headers=headers, json=body)
            fake_llm.wait_for(live_agent.key, lambda request: True)  # the run is under way
            repeats = [pool.submit(client.post, path, headers=headers, json=body) for _ in range(8)]
            slowest = 0.0
            listings = 0
            while not all(r.done() for r in repeats):  # while they wait, others are served
                started = time.monotonic()
                listed = client.get("/agents", headers=auth(live_agent.persona.user_key))
                assert listed.status_code == 200
                slowest = max(slowest, time.monotonic() - started)
                listings += 1
            answers = [first.result(30), *(r.result(30) for r in repeats)]
    assert listings >= 3
    assert slowest < 2, f"a plain request waited {slowest:.1f} s for a database connection"
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert {a.json()["execution_id"] for a in answers} == {answers[0].json()["execution_id"]}
    assert all(a.headers.get("Idempotent-Replayed") == "true" for a in answers[1:])
    assert len(fake_llm.requests(live_agent.key)) == 1


def test_attaching_to_a_quiet_run_gets_its_headers_at_once(live_server_url, live_agent):
    """A stream's headers go out with its first bytes: a comment is sent at once, so a client
    attaching to a run that emits nothing yet gets its 200 now, not after a heartbeat (15 s)."""
    headers = auth(live_agent.persona.user_key)
    with _client(live_server_url) as client:
        queued = _queue_background(client, live_agent, headers)
        assert queued.status_code == 202
        # No worker: the run stays queued and silent. Far less than a heartbeat to answer.
        with client.stream(
            "GET", queued.headers["Location"] + "/stream", headers=headers, timeout=3.0
        ) as stream:
            assert stream.status_code == 200
            assert next(stream.iter_lines()).startswith(":")
        client.post(f"/executions/{queued.json()['execution_id']}/cancel", headers=headers)
