"""Workflow events on NATS JetStream, with the real nats-server (skipped, saying why, when none
is reachable): a cascade run by a worker arrives on its subjects exactly once; publishing
again is dropped by JetStream (Nats-Msg-Id); events recorded while NATS is unreachable wait in
the outbox, the cascade is not held up, and they go out once NATS is back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django_tenants.utils import schema_context

from tests.worker.conftest import wait_for
from tests.workflow_bridge.events.conftest import Review, expected_cascade, free_port
from workflow_bridge.models import EventOutbox, StateAgent
from workflow_bridge.nats import publish_pending

pytestmark = pytest.mark.usefixtures("clean_outbox", "purged")

Message = tuple[str, str, dict[str, Any]]  # subject, Nats-Msg-Id, payload


async def _stored(url: str, subjects: str) -> list[Message]:
    """Every message JetStream holds on ``subjects`` (a fresh ephemeral consumer)."""
    import nats

    client = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=1)
    try:
        js = client.jetstream()
        try:
            subscription = await js.pull_subscribe(subjects, durable=None)
        except nats.js.errors.NotFoundError:
            return []  # no stream takes these subjects yet: nothing was published
        found: list[Message] = []
        while True:
            try:
                batch = await subscription.fetch(100, timeout=0.5)
            except TimeoutError:
                # nats' own TimeoutError subclasses this one, and fetch() raises the plain
                # one when its deadline has passed before the lingering pull is sent.
                break
            for message in batch:
                headers = message.headers or {}
                found.append(
                    (message.subject, headers.get("Nats-Msg-Id", ""), json.loads(message.data))
                )
                await message.ack()
        await subscription.unsubscribe()
        return found
    finally:
        await client.close()


def stored(url: str, subjects: str) -> list[Message]:
    return asyncio.run(_stored(url, subjects))


async def _purge(url: str, slug: str) -> None:
    import nats

    client = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=1)
    try:
        js = client.jetstream()
        for stream, subjects in (
            ("CB_WORKFLOWS", f"cb.workflows.{slug}.>"),
            ("CB_AGENTS", "cb.agent.execute.alpha.>"),
        ):
            try:
                await js.purge_stream(stream, subject=subjects)
            except nats.js.errors.NotFoundError:
                pass
    finally:
        await client.close()


@pytest.fixture
def purged(review: Review, nats_url: str) -> Any:
    """The test's messages leave the (shared) NATS server with it."""
    yield
    asyncio.run(_purge(nats_url, review.workflow.slug))


def _waiting(review: Review) -> int:
    with schema_context(review.schema):
        return EventOutbox.objects.filter(published_at__isnull=True).count()


def _sent(review: Review) -> int:
    with schema_context(review.schema):
        return EventOutbox.objects.filter(published_at__isnull=False).count()


def _agent_slugs(review: Review) -> list[str]:
    with schema_context(review.schema):
        return [
            binding.agent.slug
            for binding in StateAgent.objects.filter(workflow=review.workflow)
            .select_related("agent")
            .order_by("place")
        ]


def _check_published(review: Review, url: str, resource_id: str) -> None:
    """The cascade's 8 events on the workflow's subjects and its 2 agent runs on the agents',
    each exactly once."""
    slug = review.workflow.slug
    events = stored(url, f"cb.workflows.{slug}.>")
    assert [payload["type"] for _, _, payload in events] == expected_cascade()
    assert [msg_id for _, msg_id, _ in events] == [f"{resource_id}:{n}" for n in range(1, 9)]
    groups = [subject.rsplit(".", 1)[1] for subject, _, _ in events]
    assert groups == ["lifecycle", "activities", *["agents", "agents", "activities"] * 2]
    assert {subject.split(".")[2] for subject, _, _ in events} == {slug}
    triggered = [p["execution_id"] for _, _, p in events if p["type"] == "agent_triggered"]
    for agent_slug in _agent_slugs(review):
        runs = stored(url, f"cb.agent.execute.{review.persona.slug}.{agent_slug}")
        assert len(runs) == 1, runs
        _, msg_id, payload = runs[0]
        assert msg_id.endswith(":execute") and payload["execution_id"] in triggered
        assert payload["agent"] == agent_slug and payload["resource_id"] == resource_id


def test_a_cascade_is_published_on_its_subjects_exactly_once(
    review: Review, nats_url: str, spawn_worker: Any, settings: Any
) -> None:
    settings.NATS_URL = nats_url  # this process records events too (create, submit)
    review.script()
    spawn_worker(NATS_URL=nats_url, NATS_SWEEP_SECONDS="1")
    resource = review.create()
    review.submit(resource)
    wait_for(lambda: review.state(resource) == "done", 20, "the cascade")
    wait_for(lambda: _sent(review) == 10 and _waiting(review) == 0, 10, "all published")
    _check_published(review, nats_url, resource.pk)

    # Publish everything again (as after a crash between the ack and the marking):
    # JetStream recognises every Nats-Msg-Id and stores nothing twice.
    with schema_context(review.schema):
        EventOutbox.objects.update(published_at=None)
    assert async_to_sync(publish_pending)(review.schema) == 10
    assert _waiting(review) == 0
    _check_published(review, nats_url, resource.pk)


def test_events_wait_while_nats_is_down_and_go_out_when_it_is_back(
    review: Review, nats_url: str, spawn_worker: Any, settings: Any
) -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    settings.NATS_URL = nowhere
    review.script()
    worker = spawn_worker(NATS_URL=nowhere, NATS_SWEEP_SECONDS="1")
    resource = review.create()
    review.submit(resource)
    # The cascade does not wait for NATS.
    wait_for(lambda: review.state(resource) == "done", 20, "the cascade without NATS")
    wait_for(lambda: _waiting(review) == 10, 5, "every message in the outbox")
    assert _sent(review) == 0
    assert stored(nats_url, f"cb.workflows.{review.workflow.slug}.>") == []
    worker.stop()

    # NATS is reachable again (here: the workers are pointed at the real server).
    spawn_worker(NATS_URL=nats_url, NATS_SWEEP_SECONDS="1")
    wait_for(lambda: _sent(review) == 10, 15, "published after the outage")
    _check_published(review, nats_url, resource.pk)
