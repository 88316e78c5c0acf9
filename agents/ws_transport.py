"""Bounded sending for WebSocket consumers (an outbox in front of one writer, flow control from
daphne's send buffer) and handles on a connection's tasks.

An ASGI ``send`` of a WebSocket frame returns at once under daphne: Twisted appends the bytes
to the transport's buffer, which grows without limit when the client does not read. Twisted
does signal its high-water mark (64 KiB) to a registered push producer, so the writer registers
one (:class:`FlowControl`) on the connection's protocol and waits while it is paused.

Memory per connection is then bounded by: the transport buffer (high-water mark plus one
message), ``events`` queued event messages (their producers wait for room, which throttles
their database reads) and ``replies`` queued replies (requests never wait; more queued replies
than that means the client does not read, :class:`SlowConsumer`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.core import RunHandle

logger = logging.getLogger(__name__)


class SlowConsumer(Exception):
    """The client does not read what it is sent: the connection is to be closed."""


class FlowControl:
    """A Twisted push producer (``IPushProducer``) whose state is an asyncio event: set while
    the transport accepts more data."""

    def __init__(self) -> None:
        self._writable = asyncio.Event()
        self._writable.set()
        self.attached = False

    # Twisted's IPushProducer, called on the reactor thread (the event loop's, under daphne).
    def pauseProducing(self) -> None:
        self._writable.clear()

    def resumeProducing(self) -> None:
        self._writable.set()

    def stopProducing(self) -> None:
        # The connection is gone: nobody should keep waiting.
        self._writable.set()

    async def wait_writable(self, patience: float) -> bool:
        """True once the transport takes more data; False if it did not within ``patience``."""
        if self._writable.is_set():
            return True
        try:
            async with asyncio.timeout(patience):
                await self._writable.wait()
        except TimeoutError:
            return False
        return True


def flow_control_for(send: Callable[..., Any]) -> FlowControl:
    """Flow control for the connection behind an ASGI ``send``.

    Daphne's ``send`` is ``functools.partial(server.handle_reply, protocol)``; the protocol's
    Twisted transport takes one push producer. The HTTP channel that carried the upgrade is
    still registered there, though the socket now belongs to the WebSocket: ours replaces it.
    Under another server the outbox still bounds what is queued here, and that server's
    ``send`` is expected to wait for its own buffer.
    """
    flow = FlowControl()
    protocol = send.args[0] if isinstance(send, functools.partial) and send.args else None
    transport = getattr(protocol, "transport", None)
    if transport is None or not hasattr(transport, "registerProducer"):
        logger.debug("no transport flow control for this websocket server")
        return flow
    try:
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()
        transport.registerProducer(flow, True)
        flow.attached = True
    except Exception:  # flow control is a safeguard: never fail the connection over it
        logger.warning("could not attach flow control to a websocket", exc_info=True)
    return flow


@dataclass(frozen=True, slots=True)
class Outgoing:
    text: str | None = None
    close_code: int | None = None
    event: bool = False


class Outbox:
    def __init__(self, flow: FlowControl, *, events: int, replies: int | None = None) -> None:
        self.flow = flow
        # Unbounded itself; bounded by the event slots and the reply count.
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._event_slots = asyncio.Semaphore(events)
        self._replies = 0
        self._reply_limit = replies if replies is not None else events

    async def put_event(self, text: str) -> None:
        """Queue an event message, waiting for room."""
        await self._event_slots.acquire()
        self._queue.put_nowait(Outgoing(text=text, event=True))

    def put_reply(self, text: str) -> None:
        """Queue a reply without waiting; :class:`SlowConsumer` when too many are unsent."""
        if self._replies >= self._reply_limit:
            raise SlowConsumer
        self._replies += 1
        self._queue.put_nowait(Outgoing(text=text))

    def put_close(self, code: int) -> None:
        """Close the connection once everything queued before is sent."""
        self._queue.put_nowait(Outgoing(close_code=code))

    async def get(self) -> Outgoing:
        return await self._queue.get()

    def sent(self, item: Outgoing) -> None:
        if item.event:
            self._event_slots.release()
        elif item.text is not None:
            self._replies -= 1


# ---- handles on a connection's tasks ----


class Periodic:
    """``call`` every ``seconds`` on the running loop until cancelled (one timer at a time)."""

    def __init__(self, seconds: float, call: Callable[[], None]) -> None:
        self._seconds, self._call = seconds, call
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(seconds, self._fire)

    def _fire(self) -> None:
        self._timer = self._loop.call_later(self._seconds, self._fire)
        self._call()

    def cancel(self) -> None:
        self._timer.cancel()


@dataclass(eq=False)
class Follower:
    """One followed execution. ``stopped`` is the real stop signal: a task cancelled while a
    database call runs on the worker thread does not see the cancel (asgiref waits for the
    call and returns its result), so the loop checks the flag after every step."""

    task: asyncio.Task[None] | None = None
    stopped: bool = False

    def stop(self) -> None:
        self.stopped = True
        self._cancel()

    def _cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            # Repeat until it takes: a cancel swallowed by a database call is not the last.
            asyncio.get_running_loop().call_later(0.5, self._cancel)


@dataclass(eq=False)
class Run:
    """A run started by this connection: ``task`` admits it; ``handle`` once it has started."""

    task: asyncio.Task[None] | None = None
    handle: RunHandle | None = None

    @property
    def active(self) -> bool:
        starting = self.task is not None and not self.task.done()
        return starting or (self.handle is not None and self.handle.running_here)

    def stop_on_disconnect(self) -> asyncio.Future[Any] | None:
        """The socket is closing: cancel the run unless it asked to continue. Returns what to
        wait for (the run storing itself as cancelled), if anything."""
        if self.handle is not None:
            if self.handle.on_disconnect == "continue":
                return None
            self.handle.cancel()
            return self.handle.task
        if self.task is not None and not self.task.done():
            # Still being admitted: the task sees ``closing`` when admission returns (a cancel
            # landing in the database call would be swallowed by asgiref).
            return self.task
        return None
