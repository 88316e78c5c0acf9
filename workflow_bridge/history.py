"""A resource's history: the one function every step and every agent outcome is recorded by
(numbered from 1 per resource and per workflow, in the caller's transaction). Each entry is
also an event of the resource's and the workflow's streams (``workflow_bridge.events``)."""

from __future__ import annotations

from typing import Any

from django.db.models import Max

from workflow_bridge import events
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
    recorded on both sides). The caller holds the resource's row lock (or created it), and
    records entries of this one resource in its transaction: from the first entry on, the
    workflow's event counter stays locked until it ends (see ``workflow_bridge.events``)."""
    last = ResourceEvent.objects.filter(resource=resource).aggregate(m=Max("seq"))["m"] or 0
    entry = ResourceEvent.objects.create(
        resource=resource,
        seq=last + 1,
        workflow_id=resource.workflow_id,
        workflow_seq=events.next_workflow_seq(resource.workflow_id),
        kind=kind,
        actor=actor[:200],
        activity=activity,
        from_marking=from_marking if from_marking is not None else resource.marking,
        to_marking=to_marking if to_marking is not None else resource.marking,
        data=data,
        execution_id=execution_id,
    )
    events.recorded(entry, resource)
    return entry
