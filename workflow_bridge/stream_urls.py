"""Event streams of workflows and resources (SSE; tenant URLconf): exact paths, no trailing
slash. The workflow REST API has its own URLconf (``workflow_bridge.urls``)."""

from __future__ import annotations

from django.urls import path

from workflow_bridge import streams

urlpatterns = [
    path(
        "resources/<str:resource_id>/events/stream",
        streams.resource_events_stream,
        name="resource-events-stream",
    ),
    path(
        "workflows/<str:workflow_id>/events/stream",
        streams.workflow_events_stream,
        name="workflow-events-stream",
    ),
]
