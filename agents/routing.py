"""WebSocket routes. Paths have no leading slash (Channels strips it); anything else is
refused at the handshake instead of raising "No route found"."""

from __future__ import annotations

from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from agents.consumers import AgentsConsumer

# Channels routes ASGI applications with Django's own URL patterns, which django-stubs types for
# views only (and types-channels wants them as a pattern type no function returns): the ignores
# here and on URLRouter in config/asgi.py are that mismatch, nothing else.
websocket_urlpatterns = [
    path("agents/ws", AgentsConsumer.as_asgi()),  # type: ignore[arg-type]
    re_path(r"", WebsocketDenier.as_asgi()),  # type: ignore[arg-type]
]
