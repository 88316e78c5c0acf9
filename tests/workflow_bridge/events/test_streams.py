"""Workflow events over SSE and the WebSocket, against the live server: a resource's
stream sees its cascade live as a worker runs it and resumes without loss or repeats; a
workflow's stream interleaves its resources in commit order; another tenant's ids are not
found; refusals have the platform's error shape."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from django_tenants.utils import schema_context

from tests.api.conftest import SseEvent, auth
from tests.workflow_bridge.events.conftest import Review, expected_cascade
from tests.workflow_bridge.test_cascade import review_flow
from tests.ws.conftest import WsEnv, authed, recv, send, ws  # noqa: F401 (fixture)
from workflow_bridge.services import resource_create, workflow_save


def sse_stream(response: httpx.Response) -> Iterator[SseEvent]:
    """Events of an SSE response as they arrive (keep-alive comments and the opening
    ``retry:`` skipped)."""
    fields: dict[str, list[str]] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in fields:
                seq = fields.get("id", [None])[0]
                yield SseEvent(
                    int(seq) if seq is not None else None,
                    fields.get("event", ["message"])[0],
                    "\n".join(fields.get("data", [])),
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)


def take(
    events: Iterator[SseEvent], done: Callable[[SseEvent], bool], timeout: float = 30
) -> list[SseEvent]:
    """Events up to and including the first ``done`` one (the read timeout bounds each wait)."""
    seen: list[SseEvent] = []
    deadline = time.monotonic() + timeout
    for event in events:
        seen.append(event)
        if done(event):
            return seen
        assert time.monotonic() < deadline, f"no final event within {timeout}s: {seen}"
    raise AssertionError(f"the stream ended early: {seen}")


def _client(live_server_url: Any, read_timeout: float = 20) -> httpx.Client:
    return httpx.Client(base_url=live_server_url.url, timeout=httpx.Timeout(10, read=read_timeout))


def _is_done(event: SseEvent) -> bool:
    return event.json().get("to_state") == "done"


def test_a_resource_stream_sees_its_cascade_live_and_resumes(
    live_server_url: Any, review: Review, spawn_worker: Any
) -> None:
    review.script(delay=0.4)
    resource = review.create("Live text.")
    path = f"/resources/{resource.pk}/events/stream"
    headers = auth(review.persona.readonly_key)
    with _client(live_server_url) as client:
        with client.stream("GET", path, headers=headers) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["Location"] == path
            events = sse_stream(response)
            first = next(events)
            assert (first.id, first.event) == (1, "resource_created")
            # Nothing else has happened yet: what follows is live.
            spawn_worker()
            review.submit(resource)
            arrived: dict[str, float] = {}
            rest = []
            for event in events:
                arrived.setdefault(event.event, time.monotonic())
                rest.append(event)
                if _is_done(event):
                    done_at = time.monotonic()
                    break
        live = [first, *rest]
        assert [e.event for e in live] == expected_cascade()
        assert [e.id for e in live] == list(range(1, 9))
        payloads = [e.json() for e in live]
        assert [p["seq"] for p in payloads] == list(range(1, 9))
        assert all(p["resource_id"] == resource.pk for p in payloads)
        assert payloads[2]["type"] == "agent_triggered" and payloads[2]["execution_id"]
        # Both agents took their time after the first trigger: the events came one by one,
        # not as one replay at the end.
        assert arrived["resource_activity_executed"] < arrived["agent_triggered"]
        assert done_at - arrived["agent_triggered"] > 0.6

        # Resume after event 3 (header or query): the rest, once each, in order.
        for resume in ({"headers": {**headers, "Last-Event-ID": "3"}}, {"params": {"after": 3}}):
            resume.setdefault("headers", headers)
            with client.stream("GET", path, **resume) as again:
                resumed = take(sse_stream(again), _is_done)
            assert [(e.id, e.event, e.data) for e in resumed] == [
                (e.id, e.event, e.data) for e in live[3:]
            ]
    # Past the end: nothing comes (the stream stays open, with keep-alives only).
    with _client(live_server_url, read_timeout=1) as client:
        with client.stream("GET", path, headers=headers, params={"after": 8}) as tail:
            with pytest.raises(httpx.ReadTimeout):
                next(sse_stream(tail))


def test_a_workflow_stream_interleaves_its_resources_in_commit_order(
    live_server_url: Any, review: Review
) -> None:
    workflow = review.workflow
    headers = auth(review.persona.user_key)
    with _client(live_server_url) as client:
        with client.stream(
            "GET", f"/workflows/{workflow.slug}/events/stream", headers=headers
        ) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["Location"] == f"/workflows/{workflow.pk}/events/stream"
            events = sse_stream(response)
            first = review.create("A")
            assert next(events).id == 1
            second = review.create("B")
            review.submit(second)
            review.submit(first)  # (no worker: the agents' triggers wait in the queue)
            seen = [next(events) for _ in range(3)]
        order = [(e.id, e.event, e.json()["resource_id"], e.json()["seq"]) for e in seen]
        assert order == [
            (2, "resource_created", second.pk, 1),
            (3, "resource_activity_executed", second.pk, 2),
            (4, "resource_activity_executed", first.pk, 2),
        ]
        with client.stream(
            "GET",
            f"/workflows/{workflow.pk}/events/stream",
            headers={**headers, "Last-Event-ID": "2"},
        ) as again:
            resumed = [e.id for e in take(sse_stream(again), lambda e: e.id == 4)]
        assert resumed == [3, 4]


@pytest.fixture
def alpha_resource(alpha: Any) -> Any:
    with schema_context(alpha.schema):
        workflow = workflow_save(
            definition=review_flow("stream-refusals"), actor="tests", schema_name=alpha.schema
        )
        resource = resource_create(
            workflow=workflow,
            data={"secret": "alpha-only"},
            metadata={},
            actor="tests",
            schema_name=alpha.schema,
        )
    return workflow, resource


def test_streams_of_another_tenant_are_not_found(
    api: Any, alpha: Any, bravo: Any, alpha_resource: Any
) -> None:
    workflow, resource = alpha_resource
    client = api(bravo.admin_key)
    for path in (
        f"/resources/{resource.pk}/events/stream",
        f"/workflows/{workflow.pk}/events/stream",
        f"/workflows/{workflow.slug}/events/stream",
        "/resources/res_missing/events/stream",
    ):
        response = client.get(path)
        assert response.status_code == 404, (path, response.content)
        body = response.json()
        assert body["error"]["code"] == "not_found" and "request_id" in body
        assert "alpha-only" not in response.content.decode()


def test_stream_refusals_use_the_error_shape(api: Any, alpha: Any, alpha_resource: Any) -> None:
    _, resource = alpha_resource
    path = f"/resources/{resource.pk}/events/stream"
    anonymous = api(None, host=alpha.host).get(path)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    client = api(alpha.readonly_key)
    posted = client.post(path, {})
    assert posted.status_code == 405 and posted["Allow"] == "GET"
    bad = client.get(path, headers={"Last-Event-ID": "soon"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_error"


# ---- the WebSocket ----


async def test_websocket_subscriptions_follow_a_resource_and_a_workflow(
    ws: WsEnv,  # noqa: F811 (fixture)
    review: Review,
) -> None:
    from asgiref.sync import sync_to_async

    resource = await sync_to_async(review.create, thread_sensitive=False)("Over the socket.")
    async with ws.connect() as conn:
        await authed(conn, review.persona.readonly_key)
        await send(conn, {"type": "subscribe_resource", "resource_id": resource.pk})
        assert await recv(conn) == {
            "type": "subscribed",
            "stream": "resource",
            "resource_id": resource.pk,
            "after": 0,
        }
        created = await recv(conn)
        assert created["type"] == "resource_created" and created["seq"] == 1
        assert created["stream"] == "resource" and created["workflow_seq"] == 1
        assert created["workflow_slug"] == review.workflow.slug
        await send(
            conn, {"type": "subscribe_workflow", "workflow_id": review.workflow.slug, "after": 1}
        )
        assert await recv(conn) == {
            "type": "subscribed",
            "stream": "workflow",
            "workflow_id": review.workflow.pk,
            "after": 1,
        }
        await sync_to_async(review.submit, thread_sensitive=False)(resource)
        live = [await recv(conn), await recv(conn)]
        # The step arrives once per subscription, each saying which.
        assert sorted((m["type"], m["stream"], m["seq"]) for m in live) == [
            ("resource_activity_executed", "resource", 2),
            ("resource_activity_executed", "workflow", 2),
        ]
        assert {m["to_state"] for m in live} == {"summarising"}
        await send(conn, {"type": "unsubscribe_resource", "resource_id": resource.pk})
        assert await recv(conn) == {
            "type": "unsubscribed",
            "stream": "resource",
            "resource_id": resource.pk,
        }
        await send(conn, {"type": "unsubscribe_workflow", "workflow_id": review.workflow.slug})
        assert await recv(conn) == {
            "type": "unsubscribed",
            "stream": "workflow",
            "workflow_id": review.workflow.pk,
        }


async def test_websocket_ids_of_another_tenant_are_not_found(
    ws: WsEnv,  # noqa: F811 (fixture)
    review: Review,
) -> None:
    from asgiref.sync import sync_to_async

    resource = await sync_to_async(review.create, thread_sensitive=False)("Alpha's.")
    async with ws.connect() as conn:
        await authed(conn, ws.bravo.admin_key)
        await send(conn, {"type": "subscribe_resource", "resource_id": resource.pk})
        refused = await recv(conn)
        assert refused["type"] == "error" and refused["code"] == "not_found"
        assert refused["resource_id"] == resource.pk
        await send(conn, {"type": "subscribe_workflow", "workflow_id": review.workflow.pk})
        refused = await recv(conn)
        assert refused["type"] == "error" and refused["code"] == "not_found"
        assert "Alpha's" not in json.dumps(refused)
        await send(conn, {"type": "subscribe_resource", "resource_id": 7})
        assert (await recv(conn))["code"] == "validation_error"
