"""Fixtures for workflow events: the review workflow of the cascade tests with its two agents
bound to the fake LLM (committed: workers and the live server see them), readers of the
stored log, and the real NATS server when one is reachable."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pytest
from django_tenants.utils import schema_context

from tests.agents.conftest import make_agent, make_credential
from tests.conftest import Persona
from tests.workflow_bridge.test_cascade import review_flow
from workflow_bridge.events import WorkflowEvent, read_resource_events, read_workflow_events
from workflow_bridge.models import EventOutbox, Resource, StateAgent, Workflow
from workflow_bridge.services import activity_fire, resource_create, workflow_save

# The JetStream tests use this server (the development machine runs `nats-server -js` there).
NATS_TEST_URL = os.environ.get("NATS_TEST_URL", "nats://127.0.0.1:4222")


@dataclass
class Review:
    """A review workflow of one persona whose two places run agents that cascade to done."""

    persona: Persona
    workflow: Workflow
    summariser_key: str
    checker_key: str
    fake_llm: Any

    @property
    def schema(self) -> str:
        return self.persona.schema

    def script(self, *, delay: float = 0.0) -> None:
        """Both agents answer (each after ``delay`` seconds); enough replies for a few
        resources."""
        reply = {"latency": delay} if delay else {}
        self.fake_llm.script(self.summariser_key, *[{"reply": "A summary.", **reply}] * 4)
        self.fake_llm.script(self.checker_key, *[{"reply": "fine", **reply}] * 4)

    def create(self, document: str = "A text.") -> Resource:
        with schema_context(self.schema):
            return resource_create(
                workflow=self.workflow,
                data={"document": document},
                metadata={},
                actor="tests",
                schema_name=self.schema,
            )

    def submit(self, resource: Resource) -> None:
        with schema_context(self.schema):
            activity_fire(
                resource=Resource.objects.get(pk=resource.pk),
                activity_id="submit",
                data=None,
                actor="tests",
                schema_name=self.schema,
            )

    def state(self, resource: Resource) -> str | None:
        with schema_context(self.schema):
            return Resource.objects.get(pk=resource.pk).state

    def events(self, resource: Resource) -> list[WorkflowEvent]:
        with schema_context(self.schema):
            return read_resource_events(resource.pk, 0)

    def workflow_events(self) -> list[WorkflowEvent]:
        with schema_context(self.schema):
            return read_workflow_events(self.workflow.pk, 0)


def make_review(persona: Persona, fake_llm: Any) -> Review:
    summariser_key, checker_key = f"sk-test-{uuid.uuid4().hex}", f"sk-test-{uuid.uuid4().hex}"
    with schema_context(persona.schema):
        agents = []
        for key in (summariser_key, checker_key):
            credential = make_credential(kind="openai", base_url=f"{fake_llm.url}/v1", api_key=key)
            agents.append(make_agent(credential, persona.schema))
        workflow = workflow_save(
            definition=review_flow(f"review-{uuid.uuid4().hex[:8]}"),
            actor="tests",
            schema_name=persona.schema,
        )
        StateAgent.objects.create(
            workflow=workflow,
            place="summarising",
            agent=agents[0],
            input_mapping={"message": "data.document"},
            output_mapping={"data.summary": "output"},
            auto_activity="summarised",
        )
        StateAgent.objects.create(
            workflow=workflow,
            place="checking",
            agent=agents[1],
            output_mapping={"metadata.verdict": "output"},
            auto_activity="checked",
        )
    return Review(persona, workflow, summariser_key, checker_key, fake_llm)


@pytest.fixture
def review(committed_personas: Any, fake_llm: Any, settings: Any, clean_queue: None) -> Review:
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    return make_review(committed_personas["alpha"], fake_llm)


@pytest.fixture
def clean_outbox(committed_personas: Any) -> Iterator[None]:
    """No NATS outbox rows before or after (they are tenant rows the wipe leaves)."""

    def wipe() -> None:
        for persona in committed_personas.values():
            with schema_context(persona.schema):
                EventOutbox.objects.all().delete()

    wipe()
    yield
    wipe()


def expected_cascade() -> list[str]:
    """The event types of one resource created, submitted and cascaded to done."""
    return [
        "resource_created",
        "resource_activity_executed",  # submit (by a person)
        "agent_triggered",
        "agent_result",
        "resource_activity_executed",  # summarised (the summariser's auto activity)
        "agent_triggered",
        "agent_result",
        "resource_activity_executed",  # checked: done
    ]


# ---- NATS ----


def nats_reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4222), 1):
            return True
    except OSError:
        return False


@pytest.fixture
def nats_url() -> str:
    """The real NATS server (with JetStream), or the test is skipped saying why."""
    if not nats_reachable(NATS_TEST_URL):
        pytest.skip(
            f"no NATS server at {NATS_TEST_URL} (start `nats-server -js`, or set NATS_TEST_URL)"
        )

    async def jetstream_enabled() -> bool:
        import nats

        client = await nats.connect(NATS_TEST_URL, connect_timeout=2, max_reconnect_attempts=1)
        try:
            await client.jetstream().account_info()
            return True
        except Exception:
            return False
        finally:
            await client.close()

    if not asyncio.run(jetstream_enabled()):
        pytest.skip(f"the NATS server at {NATS_TEST_URL} has no JetStream (run it with -js)")
    return NATS_TEST_URL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
