"""Reads of workflows and resources that summarise many rows at once (current tenant schema).

Markings are JSON objects (place → positive token count), so these questions are answered by
PostgreSQL's ``jsonb`` functions in one query, never by loading every resource.
"""

from __future__ import annotations

from django.db import connection

from workflow_bridge.models import Workflow


def workflow_token_counts(workflow: Workflow) -> dict[str, int]:
    """Tokens per place, summed over the workflow's resources (places without any left out)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.key, SUM(t.value::bigint) "
            "FROM workflow_bridge_resource r, jsonb_each_text(r.marking) t "
            "WHERE r.workflow_id = %s GROUP BY t.key",
            [workflow.pk],
        )
        return {str(place): int(total) for place, total in cursor.fetchall() if total}


def marked_places_in_use(*, workflow_id: str | None = None) -> list[str]:
    """The places that hold a token of some resource (of one workflow, or of any), sorted."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT jsonb_object_keys(marking) AS place FROM workflow_bridge_resource "
            "WHERE %s::text IS NULL OR workflow_id = %s ORDER BY place",
            [workflow_id, workflow_id],
        )
        return [str(place) for (place,) in cursor.fetchall()]
