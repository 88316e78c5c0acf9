"""WebSocket routes. Paths have no leading slash (Channels strips it); anything else is
refused at the handshake instead of raising "No route found"."""

from __future__ import annotations

from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from agents.consumers import AgentsConsumer

websocket_urlpatterns = [
    path("agents/ws", AgentsConsumer.as_asgi()),
    re_path(r"", WebsocketDenier.as_asgi()),
]
