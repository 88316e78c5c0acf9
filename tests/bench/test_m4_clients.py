"""The raw followers of the M4/M5 phase (bench/m4_clients.py) and its window choice
(bench/m4.py): bytes in, counters out; no server, no database."""

from __future__ import annotations

import asyncio
import json
import struct
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # bench/ is scripts with flat imports, not a package

import m4  # noqa: E402
from m4_clients import SseFollower, WsFollower  # noqa: E402


class Wire(asyncio.Transport):
    """Records what a follower writes."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = b""
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += bytes(data)

    def abort(self) -> None:
        self.aborted = True


def server_frame(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    return bytes([0x80 | opcode, len(payload)]) + payload


def client_frames(raw: bytes) -> list[tuple[int, bytes]]:
    """Unmask what the follower sent after its handshake."""
    out = []
    while raw:
        opcode, size = raw[0] & 0x0F, raw[1] & 0x7F
        at = 2
        if size == 126:
            size, at = struct.unpack("!H", raw[2:4])[0], 4
        assert raw[1] & 0x80, "client frames must be masked"
        mask, body = raw[at : at + 4], raw[at + 4 : at + 4 + size]
        out.append((opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(body))))
        raw = raw[at + 4 + size :]
    return out


async def test_sse_counts_heartbeats_split_across_reads_once_and_sees_the_end() -> None:
    f = SseFollower("127.0.0.1", 80, "/agents/a/executions/x/stream", "Bearer k", 0)
    wire = Wire()
    f.connection_made(wire)
    assert b"Last-Event-ID: 0" in wire.sent
    # Nothing to replay: the head comes with the first heartbeat, which is not a later one.
    f.data_received(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n: keep-")
    assert not f.ready.done()
    f.data_received(b"alive\n\n")
    assert f.ready.done() and f.heartbeats == 1 and f.beats_at_open == 1
    f.data_received(b"id: 1\nevent: execution.started\ndata: {}\n\n: keep")
    f.data_received(b"-alive\n\n")  # one heartbeat split over two reads
    f.data_received(b": keep-alive\n\n")
    assert f.heartbeats == 3 and f.beats_at_open == 1
    assert not f.ended.done()
    f.data_received(b"id: 2\nevent: cancelled\ndata: {}\n\ndata: [DO")
    f.data_received(b"NE]\n\n")
    assert f.terminal and f.terminal_event and f.ended.done()


async def test_sse_refused_stream_fails_the_open() -> None:
    f = SseFollower("127.0.0.1", 80, "/x", "Bearer k", 0)
    wire = Wire()
    f.connection_made(wire)
    f.data_received(b"HTTP/1.1 429 Too Many Requests\r\n\r\n{}")
    assert f.ready.done() and isinstance(f.ready.exception(), ConnectionError)
    assert wire.aborted


async def test_websocket_subscribes_after_auth_answers_pings_and_sees_the_end() -> None:
    f = WsFollower("127.0.0.1", 80, "Bearer k", "exec-1", 0)
    wire = Wire()
    f.connection_made(wire)
    assert wire.sent.startswith(b"GET /agents/ws HTTP/1.1\r\n")
    wire.sent = b""
    auth = server_frame(0x1, json.dumps({"type": "auth_success"}).encode())
    # The handshake answer and the first frame in one read, the frame cut in two.
    f.data_received(b"HTTP/1.1 101 Switching Protocols\r\n\r\n" + auth[:5])
    assert wire.sent == b""
    f.data_received(auth[5:])
    [(opcode, body)] = client_frames(wire.sent)
    assert opcode == 0x1
    assert json.loads(body) == {"type": "subscribe", "execution_id": "exec-1", "after": 0}
    f.data_received(server_frame(0x1, b'{"type":"subscribed","execution_id":"exec-1"}'))
    assert f.ready.done() and f.ready.exception() is None
    wire.sent = b""
    f.data_received(server_frame(0x9, b"beat"))  # daphne's keepalive ping
    assert f.heartbeats == 1
    assert client_frames(wire.sent) == [(0xA, b"beat")]
    # The platform's own heartbeat message (granian sends no pings).
    f.data_received(server_frame(0x1, b'{"type":"heartbeat","timestamp":"t"}'))
    assert f.heartbeats == 2
    assert not f.ended.done()
    f.data_received(server_frame(0x1, b'{"type":"cancelled","execution_id":"exec-1"}'))
    assert f.terminal and f.ended.done()


async def test_websocket_auth_failure_fails_the_open() -> None:
    f = WsFollower("127.0.0.1", 80, "Bearer bad", "exec-1", 0)
    f.connection_made(Wire())
    f.data_received(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    f.data_received(server_frame(0x1, b'{"type":"auth_failure","error":"no"}'))
    assert isinstance(f.ready.exception(), ConnectionError)


def test_the_report_section_is_empty_without_the_phase_and_lists_both_kinds() -> None:
    assert m4.render_m4({}) == []
    row: dict[str, Any] = {
        "streams_asked": 10,
        "opened": 10,
        "per_stream_kib": {"rss": 40.0, "pss": 39.0, "uss": 38.0},
        "threads_per_stream": 1.0,
        "db_connections": {"zero": 3, "open": 4},
        "idle_cpu_percent": 0.1,
        "heartbeat_received": 10,
        "ended": 10,
        "within_target": True,
        "reached_target_streams": False,
        "memory_kib": {"before": {"threads": 10}, "open": {"threads": 20}},
    }
    text = "\n".join(
        m4.render_m4({"m4": {"target_streams": 10_000, "target_kib": m4.TARGET_KIB, "sse": row}})
    )
    assert "| SSE | 10 | 10 | 40.0 (39.0, 38.0) | 1.00 | 3 / 4 |" in text
    assert "one thread per open stream" in text
