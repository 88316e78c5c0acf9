"""ASGI entry point: ``/mcp`` through ``agents.mcp.app``; other HTTP through Django (tenant routing in middleware), WebSocket through
Channels behind ``TenantHostMiddleware`` (host → tenant before the handshake is accepted; the
consumer then fixes tenant and principal from the credential).

Channels' ``AllowedHostsOriginValidator`` is not used: it refuses clients that send no
``Origin`` (every non-browser client). ``TenantHostMiddleware`` checks Host and, when present,
Origin against ``ALLOWED_HOSTS`` (tenant subdomains included by its patterns) itself.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from agents.mcp.app import McpApplication  # noqa: E402
from agents.routing import websocket_urlpatterns  # noqa: E402
from tenants.channels import TenantHostMiddleware  # noqa: E402

# /mcp (and its Protected Resource Metadata, and lifespan events) in front of everything else.
application = McpApplication(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # ignore: Django URL patterns routing ASGI apps (see agents/routing.py).
            "websocket": TenantHostMiddleware(URLRouter(websocket_urlpatterns)),  # type: ignore[arg-type]
        }
    )
)
