"""Agents and price tables cached per process for runs (agents.core.run_config): a known agent
is admitted without a query, only while the process's hub listens, and a change (here or in
another process) is seen by the next run; one tenant never finds another's cached agent."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import httpx
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from agents.core import run_config
from agents.core.admission import Admitted, Origin, admit
from agents.core.hub import EventHub
from agents.core.requests import RunRequest
from agents.models import Agent, ModelPrice, ProviderCredential
from agents.services.agents import agent_update
from agents.services.credentials import credential_update
from config.errors import NotFound
from tenants.erasure import tenant_delete
from tenants.services import tenant_create
from tests.agents.conftest import make_agent, make_credential
from tests.api.conftest import auth, llm_agent_for
from tests.conftest import Persona, live_server

CACHED_TABLES = ('"agents_agent"', '"agents_modelprice"', '"agents_providercredential"')


def until(check: Callable[[], bool], what: str, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {deadline}s")


@pytest.fixture
def listening_hub() -> Iterator[EventHub]:
    """An event hub of this (test) process, listening, on an event loop of its own thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-hub-loop", daemon=True)
    thread.start()
    hub = EventHub()

    async def connect() -> None:
        await asyncio.wait_for(hub.wait_connected(), 10)

    asyncio.run_coroutine_threadsafe(connect(), loop).result(15)
    until(run_config.listening, "the hub counts as listening")
    try:
        yield hub
    finally:
        hub.stop()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def _admit(persona: Persona | str, ref: str) -> Admitted:
    schema = persona if isinstance(persona, str) else persona.schema
    with schema_context(schema):
        return admit(schema, RunRequest(agent_ref=ref, message="hi"), Origin("tests"))


def _reads_of_cached_tables(captured: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"] for q in captured.captured_queries if any(t in q["sql"] for t in CACHED_TABLES)
    ]


def _warm_admission(persona: Persona | str, ref: str) -> bool:
    with CaptureQueriesContext(connection) as captured:
        _admit(persona, ref)
    return not _reads_of_cached_tables(captured)


def _echo_agent(persona: Persona, **overrides: object) -> Agent:
    with schema_context(persona.schema):
        return make_agent(make_credential(kind="echo"), persona.schema, **overrides)


@pytest.mark.django_db(transaction=True)
def test_a_known_agent_is_admitted_without_a_query_while_the_hub_listens(
    committed_personas, listening_hub
):
    alpha = committed_personas["alpha"]
    agent = _echo_agent(alpha)
    with schema_context(alpha.schema):
        ModelPrice.objects.create(model="fake-model", input_per_million=Decimal("3"))
    first = _admit(alpha, agent.slug)  # reads and caches the agent and the price table
    # Once warm (the NOTIFYs of the set-up's own writes, heard meanwhile, forget the schema
    # once more), an admission reads none of those tables.
    until(lambda: _warm_admission(alpha, agent.slug), "an admission without a read")
    with CaptureQueriesContext(connection) as captured:
        again = _admit(alpha, agent.slug)
        third = _admit(alpha, agent.slug)
    assert _reads_of_cached_tables(captured) == []
    assert again.claimed is not None and first.claimed is not None
    assert third.claimed is not None
    assert again.claimed.snapshot == first.claimed.snapshot
    # Built (and its credential decrypted) once, then shared: the same objects.
    assert third.claimed.snapshot is again.claimed.snapshot
    assert third.claimed.prices is again.claimed.prices
    assert again.claimed.prices.lookup("fake-model") is not None
    assert again.execution.agent_id == agent.id and again.execution.agent_version == agent.version

    # The hub loses its connection: from then on every admission reads the database.
    listening_hub.stop()
    assert not run_config.listening()
    for _ in range(2):
        with CaptureQueriesContext(connection) as captured:
            _admit(alpha, agent.slug)
        reads = _reads_of_cached_tables(captured)
        assert any('FROM "agents_agent"' in sql for sql in reads), reads
        assert any('FROM "agents_modelprice"' in sql for sql in reads), reads


@pytest.mark.django_db(transaction=True)
def test_without_a_listening_hub_every_admission_reads_the_database(committed_personas):
    alpha = committed_personas["alpha"]
    agent = _echo_agent(alpha)
    assert not run_config.listening()
    _admit(alpha, agent.id)
    with CaptureQueriesContext(connection) as captured:
        _admit(alpha, agent.id)
    assert any('FROM "agents_agent"' in sql for sql in _reads_of_cached_tables(captured))


@pytest.mark.django_db(transaction=True)
def test_a_change_in_this_process_is_seen_at_once_and_a_rollback_leaves_nothing(
    committed_personas, listening_hub
):
    alpha = committed_personas["alpha"]
    agent = _echo_agent(alpha)
    assert _admit(alpha, agent.id).execution.requested_model == "fake-model"  # now cached
    with schema_context(alpha.schema):
        # Inside a transaction that is then rolled back: the run sees the new model (its own
        # write), and nothing of it stays cached (a rollback announces nothing).
        with pytest.raises(RuntimeError), transaction.atomic():
            agent_update(
                agent=agent, changes={"model": "tried-model"}, actor="t", schema_name=alpha.schema
            )
            assert _admit(alpha, agent.id).execution.requested_model == "tried-model"
            raise RuntimeError("roll back")
        assert _admit(alpha, agent.id).execution.requested_model == "fake-model"
        # Committed here: the signal forgets at once, before the NOTIFY comes back.
        agent_update(
            agent=agent, changes={"model": "next-model"}, actor="t", schema_name=alpha.schema
        )
    assert _admit(alpha, agent.id).execution.requested_model == "next-model"


@pytest.mark.django_db(transaction=True)
def test_one_tenants_cached_agent_is_never_found_from_another(committed_personas, listening_hub):
    alpha, bravo = committed_personas["alpha"], committed_personas["bravo"]
    agent = _echo_agent(alpha, slug="same-slug")
    _admit(alpha, "same-slug")
    _admit(alpha, agent.id)  # cached under both refs in alpha's schema
    for ref in ("same-slug", agent.id):
        with pytest.raises(NotFound, match=r"^Agent not found\.$"):
            _admit(bravo, ref)
    theirs = _echo_agent(bravo, slug="same-slug")
    assert _admit(bravo, "same-slug").execution.agent_id == theirs.id
    assert _admit(alpha, "same-slug").execution.agent_id == agent.id


@pytest.mark.django_db(transaction=True)
def test_a_tenant_made_again_under_a_dropped_schema_never_finds_the_old_agents(listening_hub):
    """DROP SCHEMA fires no trigger: tenant deletion announces it itself."""
    slug = f"cache-{uuid.uuid4().hex[:6]}"
    made = tenant_create(slug=slug, name="Gone", domain=f"{slug}.localhost").tenant
    schema = made.schema_name
    with schema_context(schema):
        agent = make_agent(make_credential(kind="echo"), schema)
    until(lambda: _warm_admission(schema, agent.id), "the agent cached")
    tenant_delete(tenant=made, confirm=slug, actor="tests")
    again = tenant_create(slug=slug, name="Again", domain=f"{slug}.localhost").tenant
    try:
        assert again.schema_name == schema
        with pytest.raises(NotFound):
            _admit(schema, agent.id)
    finally:
        tenant_delete(tenant=again, confirm=slug, actor="tests")


# ---- another process: a live server that only the NOTIFY can tell ----


@pytest.mark.django_db(transaction=True)
def test_a_live_server_sees_changes_made_elsewhere_by_notify(
    committed_personas, fake_llm, settings
):
    """Every change is committed here, in another process than the server's; the server's
    backstop is an hour away, so only run_config_changes can make it see them."""
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    alpha, bravo = committed_personas["alpha"], committed_personas["bravo"]
    made = llm_agent_for(alpha, fake_llm)
    agent_id, schema = made.agent.id, alpha.schema
    with (
        live_server(RUN_CONFIG_CACHE_SECONDS="3600") as server,
        httpx.Client(base_url=server.url, timeout=20) as client,
    ):

        def execute(persona: Persona = alpha, ref: str = agent_id) -> httpx.Response:
            return client.post(
                f"/agents/{ref}/execute",
                headers=auth(persona.user_key),
                json={"input": {"message": "hi"}},
            )

        def sent_model(key: str) -> str | None:
            response = execute()
            assert response.status_code == 200, response.text
            logged = fake_llm.requests(key)
            return logged[-1]["json"]["model"] if logged else None

        assert sent_model(made.key) == "fake-model"
        assert execute().json()["cost"] == "0"  # no price yet; agent and prices now cached
        # Another tenant, the same slug: not found, whatever alpha's server cached.
        assert execute(bravo, made.agent.slug).status_code == 404

        with schema_context(schema):
            agent_update(
                agent=made.agent, changes={"model": "moved-model"}, actor="t", schema_name=schema
            )
        until(lambda: sent_model(made.key) == "moved-model", "the model change")

        new_key = f"sk-test-{uuid.uuid4().hex}"
        with schema_context(schema):
            credential = ProviderCredential.objects.get(pk=made.credential.pk)
            credential_update(
                credential=credential, changes={"api_key": new_key}, actor="t", schema_name=schema
            )
        until(lambda: sent_model(new_key) == "moved-model", "the credential's new key")

        with schema_context(schema):
            price = ModelPrice.objects.create(model="moved-model", input_per_million=Decimal("7"))
        until(lambda: execute().json()["cost"] != "0", "a new price")
        with schema_context(schema):
            price.input_per_million = Decimal("0")
            price.save(update_fields=["input_per_million"])
        until(lambda: execute().json()["cost"] == "0", "a changed price")

        with schema_context(schema):
            disabled = Agent.objects.get(pk=agent_id)
            disabled.enabled = False
            disabled.save(update_fields=["enabled"])
        until(lambda: execute().status_code == 400, "the agent disabled")
        assert "disabled" in execute().text
