"""What a run reads at admission, cached per process: the agent (its row with its credential,
and the snapshot of its current version) and the tenant's price table. A known agent then costs
no query and no decryption to admit and start.

Entries are keyed by schema first, so one tenant's ref never finds another tenant's agent.
Nothing is served stale:

- the cache is used only while one of this process's event hubs holds its LISTEN connection
  (``agents.core.hub``): a process that cannot hear invalidations reads the database every
  time, and everything is forgotten whenever a hub connects or loses its connection;
- any INSERT, UPDATE or DELETE of agents, agent versions, provider credentials or model prices
  NOTIFYs ``run_config_changes`` with its schema at COMMIT (statement triggers, migration
  0010), and the hub forgets that schema;
- in the process that makes a change, model signals forget the schema at once, before the
  NOTIFY comes back (``agents.apps``); dropping or restoring a schema fires no row trigger, so
  ``tenants.erasure`` and ``tenants.backup`` announce it (:func:`announce_run_config_change`);
- a read that raced with an invalidation is not stored (a generation counter: under READ
  COMMITTED, the default, a statement begun after a NOTIFY arrived sees its commit), nor a
  read that may see its own transaction's uncommitted writes there (a rollback sends nothing);
- and ``RUN_CONFIG_CACHE_SECONDS`` bounds an entry's age should all of that fail.

Cached objects are shared read-only between threads. The admission, claim and run path never
mutate the Agent row, its credential, the snapshot (a frozen dataclass) or the price table
(checked by grep over agents/core, agents/engine, agents/providers and the run interfaces: no
attribute assignment, ``save`` or ``refresh_from_db`` on them); code that changes an agent
loads its own row (``agents.services.agents.agent_get``).

Every reading function is sync and runs in the schema it names.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection

from agents.engine import AgentSnapshot, ModelOption, ModelTarget, PriceTable
from agents.models import Agent, ModelPrice
from agents.services.agents import agent_get, agent_snapshot
from agents.services.credentials import provider_config_for
from tenants.context import tenant_connection

RUN_CONFIG_CHANGES_CHANNEL = "run_config_changes"
# Agents plus price tables over all schemas: a flood of distinct refs must not grow the cache
# without bound (rare; the next runs simply read their rows again).
MAX_ENTRIES = 10_000

Prices = tuple[PriceTable, tuple[ModelOption, ...]]


def price_table() -> Prices:
    """The tenant's prices, and the models its credentials can route to (virtual models).
    Reads the current schema (uncached)."""
    rows = list(ModelPrice.objects.select_related("credential").filter(enabled=True))
    prices = PriceTable(
        {row.model: (row.input_per_million, row.output_per_million) for row in reversed(rows)}
    )
    models = tuple(
        ModelOption(
            ModelTarget(provider_config_for(row.credential), row.model), frozenset(row.capabilities)
        )
        for row in rows
        if row.credential is not None
    )
    return prices, models


@dataclass
class _Entry:
    agent: Agent
    stamp: float
    # Built by the first blocking run (a background admission needs none).
    snapshot: AgentSnapshot | None = None


@dataclass
class _Tenant:
    agents: dict[str, _Entry] = field(default_factory=dict)  # by the ref callers used
    by_pk: dict[str, _Entry] = field(default_factory=dict)
    prices: tuple[Prices, float] | None = None


_cache: dict[str, _Tenant] = {}
_size = 0
# Bumped by every forget: a read that started before it is not stored after it.
_generation = 0
_lock = threading.Lock()
# The hubs of this process whose LISTEN connection is up, with their event loops.
_hubs: dict[object, asyncio.AbstractEventLoop] = {}
# Per thread (like Django's connections): schema -> id of the open transaction that wrote
# one of the cached tables there.
_written = threading.local()


# ---- whether the cache may be used ----


def hub_listening(token: object, loop: asyncio.AbstractEventLoop) -> None:
    """A hub's LISTEN connection is up (called from its thread, after LISTEN). If no other hub
    was listening, what is cached may have changed unheard: forget it all. (While another one
    listened, every change was heard: a loop per request, as Django's test client has, would
    otherwise empty the cache at every request.)"""
    with _lock:
        # Cleared before the hub counts: no reader may see it listening and an old entry.
        if not listening():
            _forget(None)
        _hubs[token] = loop


def hub_deaf(token: object) -> None:
    """A hub's LISTEN connection is gone (lost, or the hub stopped). Nothing to forget: with no
    other hub listening the cache is unused until one connects, which forgets it."""
    with _lock:
        _hubs.pop(token, None)


def listening() -> bool:
    """Does a hub of this process hear ``run_config_changes``? (A closed loop's hub thread
    may linger up to one poll; it no longer counts.)"""
    return any(not loop.is_closed() for loop in list(_hubs.values()))


def _usable(schema_name: str) -> bool:
    # The reads run in the connection's schema: an entry must be stored under that one.
    return listening() and tenant_connection.schema_name == schema_name


def _may_store(schema_name: str) -> bool:
    """False when this transaction wrote a cached table of the schema: what it reads may be
    rolled back, and a rollback announces nothing."""
    marks: dict[str, int] | None = getattr(_written, "marks", None)
    if not marks or schema_name not in marks:
        return True
    if connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SELECT txid_current_if_assigned()")
            row = cursor.fetchone()
        if row is not None and row[0] == marks[schema_name]:
            return False
    del marks[schema_name]  # that transaction is over (committed: its NOTIFY forgets)
    return True


def _fresh(stamp: float) -> bool:
    return time.monotonic() - stamp < settings.RUN_CONFIG_CACHE_SECONDS


# ---- reads ----


def agent_for_run(schema_name: str, ref: str) -> Agent:
    """``agent_get(ref)`` for a run in ``schema_name`` (sync, in that schema): the agent by id
    or slug with its credential, ``NotFound("Agent not found.")`` otherwise. The row may be
    shared: read it, never change it."""
    if not _usable(schema_name):
        return agent_get(ref)
    tenant = _cache.get(schema_name)
    entry = tenant.agents.get(ref) if tenant is not None else None
    if entry is not None and _fresh(entry.stamp):
        return entry.agent
    generation = _generation
    agent = agent_get(ref)  # an unknown ref raises: nothing cached for it
    if _may_store(schema_name):
        _store(schema_name, generation, lambda t: _put_agent(t, ref, agent))
    return agent


def snapshot_for_run(schema_name: str, agent: Agent, version: int) -> AgentSnapshot:
    """``agent_snapshot(agent, version=version)``; cached when ``agent`` is the cached row
    (:func:`agent_for_run`) and ``version`` its current one."""
    if version != agent.version or not _usable(schema_name):
        return agent_snapshot(agent, version=version)
    tenant = _cache.get(schema_name)
    entry = tenant.by_pk.get(agent.pk) if tenant is not None else None
    if entry is None or entry.agent is not agent:
        return agent_snapshot(agent, version=version)
    if entry.snapshot is not None:
        return entry.snapshot
    generation = _generation
    snapshot = agent_snapshot(agent, version=version)  # fallbacks may read credentials
    if _may_store(schema_name):
        with _lock:
            if generation == _generation:
                entry.snapshot = snapshot
    return snapshot


def prices_for_run(schema_name: str) -> Prices:
    """:func:`price_table` of ``schema_name`` (sync, in that schema), cached."""
    if not _usable(schema_name):
        return price_table()
    tenant = _cache.get(schema_name)
    hit = tenant.prices if tenant is not None else None
    if hit is not None and _fresh(hit[1]):
        return hit[0]
    generation = _generation
    prices = price_table()
    if _may_store(schema_name):
        _store(schema_name, generation, lambda t: _put_prices(t, prices))
    return prices


def _put_agent(tenant: _Tenant, ref: str, agent: Agent) -> int:
    entry = _Entry(agent, time.monotonic())
    added = 0 if ref in tenant.agents else 1
    tenant.agents[ref] = entry
    tenant.by_pk[agent.pk] = entry
    return added


def _put_prices(tenant: _Tenant, prices: Prices) -> int:
    added = 0 if tenant.prices is not None else 1
    tenant.prices = (prices, time.monotonic())
    return added


def _store(schema_name: str, generation: int, put: Callable[[_Tenant], int]) -> None:
    global _size
    with _lock:
        if generation != _generation:
            return  # forgotten while we read: what we read may be the old configuration
        if _size >= MAX_ENTRIES:
            _cache.clear()
            _size = 0
        _size += put(_cache.setdefault(schema_name, _Tenant()))


# ---- invalidation ----


def forget_run_config(schema_name: str | None = None) -> None:
    """Drop one schema's entries, or everything."""
    with _lock:
        _forget(schema_name)


def _forget(schema_name: str | None) -> None:
    global _generation, _size  # under _lock
    _generation += 1
    if schema_name is None:
        _cache.clear()
        _size = 0
    else:
        gone = _cache.pop(schema_name, None)
        if gone is not None:
            _size -= len(gone.agents) + (gone.prices is not None)


def run_config_changed(schema_name: str) -> None:
    """A cached table of ``schema_name`` was written on this thread's connection (model
    signals): forget the schema here now; other processes hear the trigger's NOTIFY."""
    forget_run_config(schema_name)
    if connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SELECT txid_current()")
            row = cursor.fetchone()
        marks: dict[str, int] = getattr(_written, "marks", None) or {}
        marks[schema_name] = int(row[0])
        _written.marks = marks


def announce_run_config_change(schema_name: str) -> None:
    """For changes no row trigger sees (DROP SCHEMA, a restore): forget ``schema_name`` here
    now and in every process at COMMIT."""
    forget_run_config(schema_name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [RUN_CONFIG_CHANGES_CHANNEL, schema_name])
