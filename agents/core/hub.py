"""One LISTEN connection per event loop (in practice per process), fanning notifications out to
local waiters.

Followers register an ``asyncio.Event`` per log (an execution's, a resource's, a workflow's); a
notification for that log sets it. Runs executing in this process register their task, so a cancel notification (from any
process) cancels it here. If the LISTEN connection drops, the hub wakes every follower (they
poll while it is away), reconnects with backoff and wakes them all again once it listens: a
notification lost meanwhile delays a follower, never loses an event. TCP keepalives on the
connection make a silently dead peer an error within seconds rather than hours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypedDict

from django.conf import settings

from agents.core.run_config import (
    RUN_CONFIG_CHANGES_CHANNEL,
    forget_run_config,
    hub_deaf,
    hub_listening,
)
from tenants.key_cache import CREDENTIAL_CHANGES_CHANNEL, forget_credentials
from tenants.plans import PLAN_CHANGES_CHANNEL, forget_limits

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

EVENTS_CHANNEL = "execution_events"
CANCEL_CHANNEL = "execution_cancel"
# Other numbered logs whose writers NOTIFY ``<schema>:<log id>:<n>`` at COMMIT: the workflow
# bridge's resource and workflow events. A log id names one log across all channels (execution
# ids ``exec_…``, resources ``res_…``, workflows ``wf_…``), so every event channel wakes the
# same waiters.
WORKFLOW_EVENTS_CHANNEL = "workflow_events"
# A tenant's agents changed (any write to the agents table): ``<schema>:agents:0``, for whoever
# lists them as tools (agents.mcp: notifications/tools/list_changed).
AGENT_CHANGES_CHANNEL = "agent_changes"
AGENTS_LOG = "agents"
# An MCP session's subscriptions changed: ``<schema>:<session log id>:0`` (agents.mcp.sessions).
MCP_SESSIONS_CHANNEL = "mcp_sessions"
EVENT_CHANNELS = frozenset(
    {EVENTS_CHANNEL, WORKFLOW_EVENTS_CHANNEL, AGENT_CHANGES_CHANNEL, MCP_SESSIONS_CHANNEL}
)
# How often the listener thread looks up from its connection to see if it should stop.
LISTEN_POLL_SECONDS = 0.5

Key = tuple[str, str]  # (schema_name, execution_id)


class ConnInfo(TypedDict, total=False):
    """``psycopg.connect`` keyword arguments for the default database."""

    dbname: str
    user: str | None
    password: str
    host: str
    port: int
    autocommit: bool
    keepalives: int
    keepalives_idle: int
    keepalives_interval: int
    keepalives_count: int


# A LISTEN connection only reads: without keepalives, a peer gone without a word (a dropped
# NAT entry, a failed-over server) would leave the hub "listening" to nothing. With these,
# the kernel notices within about idle + interval * count seconds.
HUB_KEEPALIVES: ConnInfo = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}


def conninfo() -> ConnInfo:
    db = settings.DATABASES["default"]
    info: ConnInfo = {"dbname": db["NAME"], "user": db["USER"] or None, "autocommit": True}
    if db.get("PASSWORD"):
        info["password"] = db["PASSWORD"]
    if db.get("HOST"):
        info["host"] = db["HOST"]
    if db.get("PORT"):
        info["port"] = int(db["PORT"])
    return info


class EventHub:
    def __init__(self) -> None:
        self._waiters: dict[Key, set[asyncio.Event]] = defaultdict(set)
        self._runs: dict[Key, Callable[[], None]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle ----

    def ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._thread is None or not self._thread.is_alive() or self._loop is not loop:
            self._loop = loop
            self._connected = asyncio.Event()
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._listen,
                args=(loop, self._stop),
                name="execution-event-hub",
                daemon=True,
            )
            self._thread.start()

    async def wait_connected(self) -> None:
        """Until the LISTEN connection is up (callers bound it with ``asyncio.timeout``)."""
        self.ensure_started()
        await self._connected.wait()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout)
            self._thread = None

    def _listen(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        """The LISTEN loop, on its own thread with a blocking connection: the connection's
        whole life is inside this function, so it is closed however the event loop ends
        (a loop torn down mid-connect would otherwise strand a half-open async connection)."""
        import psycopg

        delay = 0.1
        lost_at: float | None = None  # when the connection was lost (logged once per outage)
        while not stop.is_set() and not loop.is_closed():
            try:
                info = conninfo()
                info.update(HUB_KEEPALIVES)
                with psycopg.connect(**info) as conn:
                    for channel in sorted(EVENT_CHANNELS):
                        conn.execute(f"LISTEN {channel}")
                    conn.execute(f"LISTEN {PLAN_CHANGES_CHANNEL}")
                    conn.execute(f"LISTEN {CREDENTIAL_CHANGES_CHANNEL}")
                    conn.execute(f"LISTEN {RUN_CONFIG_CHANGES_CHANNEL}")
                    # Last: operators (and the outage tests) find a hub by this statement.
                    conn.execute(f"LISTEN {CANCEL_CHANNEL}")
                    loop.call_soon_threadsafe(self._on_connected, lost_at is not None)
                    if lost_at is not None:
                        logger.warning(
                            "event hub listening again after %.1fs", time.monotonic() - lost_at
                        )
                        lost_at = None
                    delay = 0.1
                    self._hear(conn, loop, stop)
            except RuntimeError:
                return  # the event loop closed under us: nobody left to notify
            except (
                Exception
            ) as exc:  # the database went away: keep trying, followers poll meanwhile
                if loop.is_closed():
                    return
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._on_lost)
                if lost_at is None:
                    lost_at = time.monotonic()
                    logger.warning(
                        "event hub lost its LISTEN connection (%s); retrying with backoff", exc
                    )
                stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _hear(
        self, conn: psycopg.Connection[Any], loop: asyncio.AbstractEventLoop, stop: threading.Event
    ) -> None:
        """Deliver notifications until told to stop (or the connection fails).

        The run-configuration cache (``agents.core.run_config``) counts this hub as listening
        only in here, and its invalidations are applied on this thread, not on the event
        loop: a busy loop cannot delay them, and once no hub of the process hears, the cache
        is not used (fail closed)."""
        token = object()
        hub_listening(token, loop)  # forgets everything unless another hub was listening
        try:
            while not stop.is_set() and not loop.is_closed():
                for notify in conn.notifies(timeout=LISTEN_POLL_SECONDS):
                    if notify.channel == RUN_CONFIG_CHANGES_CHANNEL:
                        forget_run_config(notify.payload)
                        continue
                    loop.call_soon_threadsafe(self._dispatch, notify.channel, notify.payload)
        finally:
            hub_deaf(token)

    @property
    def listening(self) -> bool:
        """Is the LISTEN connection up? Followers wait for notifications only while it is."""
        return self._connected.is_set()

    def _on_lost(self) -> None:
        self._connected.clear()
        # Followers waiting for a notification that may never come: they poll from now on.
        self._wake_all()

    def _on_connected(self, reconnected: bool = False) -> None:
        self._connected.set()
        # Anything that happened while we were not listening: wake everyone to look again.
        self._wake_all()
        if reconnected:
            # A plan or key may have changed while nobody listened. (Not on the first connect:
            # every event loop has a hub, and a process's first starts with its first request.)
            forget_limits()
            forget_credentials()

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == PLAN_CHANGES_CHANNEL:
            forget_limits()
            forget_credentials()  # cached key rows carry their tenant and plan
            return
        if channel == CREDENTIAL_CHANGES_CHANNEL:
            forget_credentials(payload)
            return
        parts = payload.split(":")
        if len(parts) < 2:
            return
        key = (parts[0], parts[1])
        if channel in EVENT_CHANNELS:
            self.wake(*key)
        elif channel == CANCEL_CHANNEL:
            if self.cancel_local(*key):
                logger.info("cancelled execution %s on request", key[1])

    # ---- followers ----

    @contextlib.contextmanager
    def waiter(self, schema_name: str, execution_id: str) -> Iterator[asyncio.Event]:
        self.ensure_started()
        event = asyncio.Event()
        key = (schema_name, execution_id)
        self._waiters[key].add(event)
        try:
            yield event
        finally:
            self._waiters[key].discard(event)
            if not self._waiters[key]:
                self._waiters.pop(key, None)

    def wake(self, schema_name: str, execution_id: str) -> None:
        for event in self._waiters.get((schema_name, execution_id), ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    # ---- runs in this process ----

    @contextlib.contextmanager
    def running(
        self, schema_name: str, execution_id: str, cancel: Callable[[], None]
    ) -> Iterator[None]:
        """While the block runs, a cancel request for this execution calls ``cancel``."""
        self.ensure_started()
        key = (schema_name, execution_id)
        self._runs[key] = cancel
        try:
            yield
        finally:
            if self._runs.get(key) is cancel:
                self._runs.pop(key, None)

    @property
    def running_count(self) -> int:
        """How many runs execute in this process now."""
        return len(self._runs)

    def cancel_local(self, schema_name: str, execution_id: str) -> bool:
        cancel = self._runs.get((schema_name, execution_id))
        if cancel is None:
            return False
        cancel()
        return True


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EventHub] = weakref.WeakKeyDictionary()


def get_hub() -> EventHub:
    """The hub of the running event loop (one per loop: daphne has one, tests may have many)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = EventHub()
    return hub
