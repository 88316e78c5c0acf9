"""SSE framing and heartbeats (in process, with a short heartbeat), and the API docs."""

from __future__ import annotations

import asyncio
import re

from asgiref.sync import async_to_sync
from django.test import Client
from django_tenants.utils import schema_context

from agents.api.sse import frame, sse_events
from agents.core import cancel_execution
from agents.models import Execution
from tenants.context import in_schema
from tests.runs import store_queued


def test_frames_split_multiline_text_per_the_sse_spec():
    assert frame(3, "chunk", "a\nb\r\nc") == b"id: 3\nevent: chunk\ndata: a\ndata: b\ndata: c\n\n"
    assert frame(None, "x", "") == b"event: x\ndata: \n\n"


def test_a_silent_stream_sends_keep_alives_and_ends_on_cancel(live_agent, settings):
    settings.SSE_HEARTBEAT_SECONDS = 0.2
    alpha = live_agent.persona
    with schema_context(alpha.schema):
        queued = store_queued(alpha.schema, live_agent.agent, message=None)

    async def scenario() -> list[bytes]:
        frames: list[bytes] = []

        async def read() -> None:
            async for item in sse_events(alpha.schema, queued.id, after=0):
                frames.append(item)

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.7)
        await in_schema(
            alpha.schema,
            lambda: cancel_execution(
                schema_name=alpha.schema,
                execution=Execution.objects.get(pk=queued.pk),
                actor="tests",
            ),
        )
        await asyncio.wait_for(reader, 5)
        return frames

    frames = async_to_sync(scenario)()
    assert frames.count(b": keep-alive\n\n") >= 2
    assert frames[-2].startswith(b"id: 1\nevent: cancelled\n")
    assert frames[-1] == b"data: [DONE]\n\n"


def test_openapi_document_is_public_and_lists_the_endpoints(alpha):
    for headers in ({}, {"HTTP_AUTHORIZATION": f"Bearer {alpha.readonly_key}"}):
        response = Client().get("/api/schema/", HTTP_ACCEPT="application/json", **headers)
        assert response.status_code == 200, response.content[:300]
        document = response.json()
        paths = document["paths"]
        assert "post" in paths["/agents/{agent_id}/execute"]
        assert "post" in paths["/agents/{agent_id}/execute/stream"]
        assert "get" in paths["/agents/{agent_id}/executions/{execution_id}/stream"]
        assert {"/agents", "/executions", "/executions/{execution_id}/cancel"} <= set(paths)
        assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_swagger_ui_references_no_external_host_and_its_files_are_served(alpha):
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui-bundle.js" in html
    external = re.findall(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", html)
    assert external == [], external
    # Known CDNs by name (a bare "cdn" substring also matches random tokens in the page).
    assert not re.search(r"jsdelivr|unpkg\.com|cdnjs|googleapis\.com", html), html
    asset = re.search(r'src="(/static/drf_spectacular_sidecar/[^"]+\.js)"', html).group(1)
    served = Client().get(asset)
    assert served.status_code == 200
    assert Client().get("/static/drf_spectacular_sidecar/../../etc/passwd").status_code == 404
