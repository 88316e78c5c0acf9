"""The ASGI handler runs Django's middleware chain and a sync view on the request's thread
after one hop (config.asgi.SyncChainASGIHandler): no crossing back to the event loop in the
middle of the chain, which cost about a millisecond of CPU per request."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref import sync
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIHandler

from config.asgi import SyncChainASGIHandler


def scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 12345),
        "server": ("127.0.0.1", 8000),
    }


async def get(app: Any, path: str) -> tuple[int, bytes]:
    communicator = ApplicationCommunicator(app, scope(path))
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(5)
    body = b""
    while True:
        message = await communicator.receive_output(5)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(5)
    return start["status"], body


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """asgiref's thread crossings, by what crossed: sync_to_async and async_to_sync calls."""
    counted: dict[str, list[str]] = {"sync_to_async": [], "async_to_sync": []}
    to_thread, to_loop = sync.SyncToAsync.__call__, sync.AsyncToSync.__call__

    def name(fn: Any) -> str:
        return str(getattr(fn, "__qualname__", fn))

    def counting_to_thread(self: Any, *args: Any, **kwargs: Any) -> Any:
        counted["sync_to_async"].append(name(self.func))
        return to_thread(self, *args, **kwargs)

    def counting_to_loop(self: Any, *args: Any, **kwargs: Any) -> Any:
        counted["async_to_sync"].append(name(self.awaitable))
        return to_loop(self, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__call__", counting_to_thread)
    monkeypatch.setattr(sync.AsyncToSync, "__call__", counting_to_loop)
    return counted


@pytest.mark.django_db
async def test_a_sync_view_is_served_after_one_hop_to_the_request_thread(hops):
    status, body = await get(SyncChainASGIHandler(), "/healthz")
    assert status == 200 and body
    assert hops["async_to_sync"] == [], hops
    # The chain with the view in one crossing; besides it only Django's request_started
    # signal and the response's close (sync receivers, called from the loop).
    assert hops["sync_to_async"].count("BaseHandler.get_response") == 1, hops
    assert not [h for h in hops["sync_to_async"] if "Middleware" in h or h == "healthz"], hops


@pytest.mark.django_db
async def test_django_s_own_handler_would_cross_three_more_times(hops):
    # What the handler above saves (if Django's changes, this test says so).
    status, _ = await get(ASGIHandler(), "/healthz")
    assert status == 200
    crossings = len(hops["sync_to_async"]) + len(hops["async_to_sync"])
    assert hops["async_to_sync"] and "healthz" in hops["sync_to_async"], hops
    assert crossings >= 6, hops
