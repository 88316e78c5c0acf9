"""A resource's history: the one function every step and every agent outcome is recorded by
(numbered from 1 per resource, in the caller's transaction)."""

from __future__ import annotations

from typing import Any

from django.db.models import Max

from workflow_bridge.models import Resource, ResourceEvent


def record(
    resource: Resource,
    *,
    kind: str,
    actor: str,
    data: dict[str, Any],
    activity: str = "",
    from_marking: dict[str, int] | None = None,
    to_marking: dict[str, int] | None = None,
    execution_id: str = "",
) -> ResourceEvent:
    """Append one entry. Without markings, the step moved no token (the resource's marking is
    recorded on both sides). The caller holds the resource's row lock (or created it)."""
    last = ResourceEvent.objects.filter(resource=resource).aggregate(m=Max("seq"))["m"] or 0
    return ResourceEvent.objects.create(
        resource=resource,
        seq=last + 1,
        kind=kind,
        actor=actor[:200],
        activity=activity,
        from_marking=from_marking if from_marking is not None else resource.marking,
        to_marking=to_marking if to_marking is not None else resource.marking,
        data=data,
        execution_id=execution_id,
    )
