"""Light followers for M4/M5: one idle SSE stream or WebSocket per ``asyncio.Protocol``.

Thousands of them live in the bench process next to everything else, so each one is a raw
socket with a few counters (no httpx client, no ``websockets`` connection object with its
own buffers and tasks): the memory measured is the server's, and the client stays small
enough to hold 10,000 of each on one machine.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
from collections.abc import Callable
from typing import Any

# A marker may be split across two reads: each read is scanned together with the tail of
# the previous one (longer than any marker).
_TAIL = 64
SSE_HEARTBEAT = b": keep-alive\n\n"
SSE_DONE = b"data: [DONE]"
SSE_TERMINAL = (b"event: complete\n", b"event: error\n", b"event: cancelled\n")
WS_TERMINAL = frozenset({"complete", "error", "cancelled"})


class Follower(asyncio.Protocol):
    """What both kinds record: open (headers / subscription acknowledged), heartbeats seen,
    the end of the execution seen, closed by the server."""

    def __init__(self, head: bytes) -> None:
        self.head = head  # the HTTP request that opens the stream
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.opened_at: float | None = None
        self.heartbeats = 0
        self.beats_at_open = 0  # heartbeats that came with (or before) the open
        self.last_heartbeat_at: float | None = None
        self.terminal = False
        self.closed = False
        self.error = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.transport.write(self.head)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.fail(f"closed by the server{f' ({type(exc).__name__})' if exc else ''}")
        if not self.ended.done():
            self.ended.set_result(None)  # the waiter learns from .terminal whether it was the end

    def fail(self, error: str) -> None:
        if not self.error and not self.ready.done():
            self.error = error
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(error))
            self.ready.exception()  # retrieved: no "never retrieved" warning if nobody waits

    def opened(self) -> None:
        if not self.ready.done():
            self.opened_at = time.monotonic()
            self.beats_at_open = self.heartbeats
            self.ready.set_result(None)

    def beat(self, count: int = 1) -> None:
        if count:
            self.heartbeats += count
            self.last_heartbeat_at = time.monotonic()

    def finish(self) -> None:
        self.terminal = True
        if not self.ended.done():
            self.ended.set_result(None)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()


class SseFollower(Follower):
    """``GET`` of an execution's stream from a cursor (``Last-Event-ID``)."""

    def __init__(self, host: str, port: int, path: str, auth: str, after: int) -> None:
        super().__init__(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {auth}\r\n"
                f"Accept: text/event-stream\r\nLast-Event-ID: {after}\r\n\r\n"
            ).encode()
        )
        self.buffer = b""  # until the response head is in; then only a tail
        self.in_body = False
        self.done = False
        self.terminal_event = False  # a complete / error / cancelled event came before [DONE]

    def data_received(self, data: bytes) -> None:
        if not self.in_body:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.buffer.split(b"\r\n", 1)[0]
            if b" 200 " not in status + b" ":
                self.fail(status.decode(errors="replace")[:120])
                self.close()
                return
            self.in_body = True
            data, self.buffer = self.buffer[end + 4 :], b""
        scan = self.buffer + data
        self.beat(scan.count(SSE_HEARTBEAT) - self.buffer.count(SSE_HEARTBEAT))
        if not self.terminal and any(m in scan for m in SSE_TERMINAL):
            self.terminal_event = True
        if SSE_DONE in scan:
            self.done = True
            self.finish()
        self.buffer = scan[-_TAIL:]
        # Open at the first whole message (the head alone may sit in a proxy or a buffer),
        # after counting: the heartbeat that opened the stream is not a later one.
        if b"\n\n" in scan:
            self.opened()


class WsFollower(Follower):
    """The agents WebSocket, authenticated at the handshake, subscribed to one execution.

    The platform sends a ``heartbeat`` message every ``WS_HEARTBEAT_SECONDS`` (20 s); daphne
    also pings every 20 s (``--ping-interval``) and closes a connection without a pong. Both
    count as this kind's heartbeat, and each ping is answered."""

    def __init__(self, host: str, port: int, auth: str, execution_id: str, after: int) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        super().__init__(
            (
                f"GET /agents/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nAuthorization: {auth}\r\n\r\n"
            ).encode()
        )
        self.subscribe = {"type": "subscribe", "execution_id": execution_id, "after": after}
        self.buffer = b""
        self.upgraded = False
        self.authenticated = False
        self.pongs = 0
        self.types: dict[str, int] = {}

    def send_json(self, message: dict[str, Any]) -> None:
        self.send_frame(0x1, json.dumps(message).encode())

    def send_frame(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.closed:
            return
        mask = os.urandom(4)  # a client's frames are masked (RFC 6455 5.3)
        size = len(payload)
        head = bytes([0x80 | opcode])
        if size < 126:
            head += bytes([0x80 | size])
        elif size < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", size)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(head + mask + masked)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.buffer.split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" ":
                self.fail(status.decode(errors="replace")[:120])
                self.close()
                return
            self.upgraded = True
            self.buffer = self.buffer[end + 4 :]
        while True:
            frame = self._frame()
            if frame is None:
                return
            self._handle(*frame)

    def _frame(self) -> tuple[int, bytes] | None:
        buf = self.buffer
        if len(buf) < 2:
            return None
        opcode, size, at = buf[0] & 0x0F, buf[1] & 0x7F, 2  # the server's frames: unmasked
        if size == 126:
            if len(buf) < 4:
                return None
            size, at = struct.unpack("!H", buf[2:4])[0], 4
        elif size == 127:
            if len(buf) < 10:
                return None
            size, at = struct.unpack("!Q", buf[2:10])[0], 10
        if len(buf) < at + size:
            return None
        self.buffer = buf[at + size :]
        return opcode, buf[at : at + size]

    def _handle(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:  # ping
            self.beat()
            self.send_frame(0xA, payload)
            return
        if opcode == 0x8:  # close
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 0
            self.fail(f"close {code}")
            self.close()
            return
        if opcode != 0x1:
            return
        try:
            kind = str(json.loads(payload).get("type"))
        except (ValueError, AttributeError):
            kind = "unparsed"
        self.types[kind] = self.types.get(kind, 0) + 1
        if kind == "auth_success":
            self.authenticated = True
            self.send_json(self.subscribe)
        elif kind == "auth_failure":
            self.fail("auth_failure")
        elif kind == "subscribed":
            self.opened()
        elif kind == "pong":
            self.pongs += 1
        elif kind == "heartbeat":
            self.beat()
        elif kind == "error" and not self.ready.done():
            self.fail(f"error before subscribed: {payload[:160]!r}")
        elif kind in WS_TERMINAL:
            self.finish()


async def open_all(
    factories: list[Callable[[], Follower]],
    host: str,
    port: int,
    per_second: float,
    each_seconds: float,
) -> tuple[list[Follower], dict[str, int]]:
    """Open every follower, ``per_second`` new connections a second, each given
    ``each_seconds`` to be open. Paced rather than a fixed number in flight: an SSE stream
    with nothing to replay gets its response head only with its first heartbeat, so "in
    flight" would mostly be waiting; and a burst beyond what the server handles queues its
    requests on the PostgreSQL pool until they time out (503). Returns the open followers
    and the failures by reason."""
    loop = asyncio.get_running_loop()
    failures: dict[str, int] = {}
    followers: list[Follower] = []

    async def one(factory: Callable[[], Follower]) -> None:
        made: list[Follower] = []
        try:
            _, follower = await asyncio.wait_for(
                loop.create_connection(factory, host, port), each_seconds
            )
            made.append(follower)
            await asyncio.wait_for(asyncio.shield(follower.ready), each_seconds)
        except (OSError, TimeoutError, ConnectionError) as exc:
            reason = f"{type(exc).__name__}: {exc}"[:160]
            failures[reason] = failures.get(reason, 0) + 1
            for half_open in made:  # connected, no answer in time: not left behind
                half_open.close()
            return
        followers.append(follower)

    tasks = []
    start = loop.time()
    for i, factory in enumerate(factories):
        delay = start + i / per_second - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(factory)))
    await asyncio.gather(*tasks)
    return followers, failures
