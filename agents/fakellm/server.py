"""Running the fake LLM server: in a background thread (tests) or in the foreground (CLI)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import uvicorn

from agents.fakellm.app import create_app
from agents.fakellm.state import Chaos, FakeState


def _config(state: FakeState, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(state),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        http="h11",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=1,
    )


@dataclass
class FakeServer:
    """A fake server running in a daemon thread; ``url`` is ``http://host:port``."""

    url: str
    state: FakeState
    _server: uvicorn.Server
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)


def start_in_thread(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    state: FakeState | None = None,
    log_level: str = "warning",
) -> FakeServer:
    """Start the server on ``port`` (0 picks a free one) and return once it accepts requests."""
    state = state or FakeState()
    # Binding here, not in uvicorn, tells us the port before the thread starts.
    # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it Nagle plus delayed ACKs add ~40 ms to every streamed response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(_config(state, host, sock.getsockname()[1], log_level))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="fakellm", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("fake LLM server did not start")
        time.sleep(0.01)
    return FakeServer(f"http://{host}:{sock.getsockname()[1]}", state, server, thread)


def serve(
    host: str,
    port: int,
    *,
    first_token_delay: float,
    chunk_delay: float,
    log_level: str,
    chaos: Chaos | None = None,
) -> None:
    """Run in the foreground until interrupted; ``chaos`` sets global fault rates."""
    state = FakeState(first_token_delay=first_token_delay, chunk_delay=chunk_delay)
    if chaos is not None:
        state.set_chaos(None, chaos)
    uvicorn.Server(_config(state, host, port, log_level)).run()
