"""ASGI entry point: ``/mcp`` through ``agents.mcp.app``; other HTTP through Django (tenant routing in middleware), WebSocket through
Channels behind ``TenantHostMiddleware`` (host → tenant before the handshake is accepted; the
consumer then fixes tenant and principal from the credential).

Channels' ``AllowedHostsOriginValidator`` is not used: it refuses clients that send no
``Origin`` (every non-browser client). ``TenantHostMiddleware`` checks Host and, when present,
Origin against ``ALLOWED_HOSTS`` (tenant subdomains included by its patterns) itself.
"""

from __future__ import annotations

import os
from typing import Any

import django
from asgiref.sync import SyncToAsync, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase

from config import tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Before Django opens a connection: only when OTEL_EXPORTER_OTLP_ENDPOINT is set (config.tracing).
tracing.setup("web")


class SyncChainASGIHandler(ASGIHandler):
    """Django's ASGI handler with its middleware chain built for sync code, entered once.

    The platform's views and most of its middleware are sync. Built for async, Django's chain
    hops threads at every boundary between sync-only and async-capable middleware and again
    for the view: here the request thread went to the event loop after the audit middleware
    and back for the view (four thread crossings per request, about a millisecond of CPU).
    Built for sync, the whole chain and the view run on the request's own thread (asgiref's
    per-request thread-sensitive context, as before) after one hop; streamed responses are
    still sent from the event loop. A view that needs the loop (``async_to_sync``) hops there
    itself, as it did before.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        response = await sync_to_async(self.get_response, thread_sensitive=True)(request)
        if response.streaming:
            leave_request_thread()
        return response


def leave_request_thread() -> None:
    """Give back the request's own thread once its view has answered with a stream.

    asgiref keeps one thread per request context for its thread-sensitive calls until the
    response is over; a stream (SSE) may stay open for hours, so every open stream held an
    idle thread (measured: one per stream, 136 KiB each, at 4,800 open streams). From here on,
    the streamed body's database calls go to the process's shared database thread, as a
    WebSocket consumer's and a detached run's do, and the request's thread ends.
    """
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is None:
        return
    executor = SyncToAsync.context_to_thread_executor.pop(context, None)
    # Only this request's task (the one sending the body) forgets its context.
    SyncToAsync.thread_sensitive_context.set(None)  # type: ignore[arg-type]
    if executor is not None:
        executor.shutdown(wait=False)  # its one thread is idle: the view has returned


django.setup(set_prefix=False)
django_asgi_app = SyncChainASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from agents.core.hub import get_hub  # noqa: E402
from agents.mcp.app import McpApplication  # noqa: E402
from agents.routing import websocket_urlpatterns  # noqa: E402
from tenants.channels import TenantHostMiddleware  # noqa: E402


class ListenFromTheStart:
    """Starts the process's LISTEN hub with its first request (daphne sends no lifespan):
    notifications that invalidate caches (plan_changes) must reach a process that has not
    streamed or run anything yet. A check of a thread and a loop per request after that."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            get_hub().ensure_started()
        await self.app(scope, receive, send)


# /mcp (and its Protected Resource Metadata, and lifespan events) in front of everything else;
# server spans around it all when tracing is on.
application = tracing.wrap_asgi(
    ListenFromTheStart(
        McpApplication(
            ProtocolTypeRouter(
                {
                    "http": django_asgi_app,
                    # ignore: Django URL patterns routing ASGI apps (see agents/routing.py).
                    "websocket": TenantHostMiddleware(URLRouter(websocket_urlpatterns)),  # type: ignore[arg-type]
                }
            )
        )
    )
)
