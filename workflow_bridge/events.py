"""Workflow events: a resource's history read as an event log, per resource and per workflow.

Every entry :func:`workflow_bridge.history.record` writes is an event. It carries two numbers:

- ``seq``, the resource's own (1, 2, … per resource; the resource's row lock orders them);
- ``workflow_seq``, the workflow's (1, 2, … across all its resources), taken from the
  workflow's :class:`~workflow_bridge.models.WorkflowEventCounter`, whose row stays locked
  until the recording transaction ends. So a workflow's events **commit in the order of their
  numbers**, with no gap left by a rolled-back transaction (its number is rolled back with
  it): a follower that has read up to ``n`` can never later find an event below ``n``. The
  price is that the event-writing transactions of one workflow queue behind each other from
  their first event to their commit (they are short: a step, a run's result); a transaction
  records events of one resource, whose row it locked first, so the lock order (resource,
  then counter) is the same everywhere and cannot deadlock.

A statement trigger on the history table NOTIFYs ``workflow_events`` at COMMIT (migration
0003); the process's event hub (``agents.core.hub``) wakes the local followers, which read the
stored rows from their cursor (:func:`follow_resource_events`, :func:`follow_workflow_events`),
exactly as execution streams do: resuming is the same read from a cursor, and nothing is lost
or repeated.

Event types: history kind ``created`` is ``resource_created``, ``activity`` is
``resource_activity_executed``; every other kind (``agent_triggered``, ``agent_result``,
``agent_failed``, ``agent_result_not_applied``, ``agent_skipped``, ``agent_refused``,
``activity_pending``, ``activity_failed``, ``auto_activity_refused``, ``cascade_stopped``) is
its own name. While ``NATS_URL`` is set, the event is also put in the NATS outbox in the same
transaction (``workflow_bridge.nats``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypedDict

from django.conf import settings
from django.db import connection

from agents.core.follow import follow_log
from tenants.context import tenant_connection
from workflow_bridge import nats
from workflow_bridge.models import Resource, ResourceEvent, Workflow, WorkflowEventCounter

# History kinds whose event type is not the kind itself (the original system's names).
RENAMED_KINDS = {"created": "resource_created", "activity": "resource_activity_executed"}
# Events read per query by a follower.
BATCH = 200


def event_type(kind: str) -> str:
    return RENAMED_KINDS.get(kind, kind)


class WorkflowEventPayload(TypedDict):
    """One workflow event as every transport sends it (SSE ``data``, WebSocket, NATS)."""

    type: str
    seq: int  # the resource's numbering: resume a resource stream after it
    workflow_seq: int  # the workflow's numbering: resume a workflow stream after it
    resource_id: str
    workflow_id: str
    workflow_slug: str
    kind: str  # the history entry's kind
    actor: str
    activity: str | None
    from_marking: dict[str, int]
    to_marking: dict[str, int]
    # The one marked place before and after, when the resource holds one token (a state
    # machine's ``from``/``to``); None otherwise.
    from_state: str | None
    to_state: str | None
    data: dict[str, Any]
    execution_id: str | None
    timestamp: str


@dataclass(frozen=True, slots=True)
class WorkflowEvent:
    seq: int
    workflow_seq: int
    type: str
    payload: WorkflowEventPayload


def _state(marking: dict[str, int]) -> str | None:
    marked = [place for place, count in marking.items() if count]
    if len(marked) == 1 and marking[marked[0]] == 1:
        return marked[0]
    return None


def event_of(entry: ResourceEvent, workflow_slug: str) -> WorkflowEvent:
    """The event of one history entry."""
    kind_type = event_type(entry.kind)
    payload: WorkflowEventPayload = {
        "type": kind_type,
        "seq": entry.seq,
        "workflow_seq": entry.workflow_seq,
        "resource_id": entry.resource_id,
        "workflow_id": entry.workflow_id,
        "workflow_slug": workflow_slug,
        "kind": entry.kind,
        "actor": entry.actor,
        "activity": entry.activity or None,
        "from_marking": dict(entry.from_marking),
        "to_marking": dict(entry.to_marking),
        "from_state": _state(entry.from_marking),
        "to_state": _state(entry.to_marking),
        "data": dict(entry.data),
        "execution_id": entry.execution_id or None,
        "timestamp": entry.created_at.isoformat(),
    }
    return WorkflowEvent(entry.seq, entry.workflow_seq, kind_type, payload)


# ---- writing (inside history.record's transaction) ----


def next_workflow_seq(workflow_id: str) -> int:
    """The next ``workflow_seq`` of the workflow. Locks the workflow's counter row until the
    caller's transaction ends (that lock is what orders the workflow's events by commit)."""
    table = WorkflowEventCounter._meta.db_table
    with connection.cursor() as cursor:
        # One statement: creates the counter on a workflow's first event, increments it
        # otherwise; either way the row is locked until COMMIT.
        cursor.execute(
            f"INSERT INTO {table} (workflow_id, last_seq) VALUES (%s, 1) "  # noqa: S608 (our table name)
            f"ON CONFLICT (workflow_id) DO UPDATE SET last_seq = {table}.last_seq + 1 "
            "RETURNING last_seq",
            [workflow_id],
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def recorded(entry: ResourceEvent, resource: Resource) -> None:
    """An entry was just written (caller's transaction): with NATS on, queue it for NATS in
    the same transaction. Without ``NATS_URL`` nothing is written: the history is the durable
    log the streams read, and an outbox nobody drains would only grow."""
    if settings.NATS_URL:
        # The schema the entry was just written in (history.record runs in the tenant's).
        schema_name = str(tenant_connection.schema_name)
        nats.outbox_write(event_of(entry, resource.workflow.slug), schema_name=schema_name)
        nats.publish_after_commit(schema_name)


# ---- reading and following ----


def read_resource_events(resource_id: str, after: int) -> list[WorkflowEvent]:
    """A resource's events with ``seq > after``, oldest first (current schema)."""
    rows = (
        ResourceEvent.objects.filter(resource_id=resource_id, seq__gt=after)
        .select_related("workflow")
        .order_by("seq")[:BATCH]
    )
    return [event_of(row, row.workflow.slug) for row in rows]


def read_workflow_events(workflow_id: str, after: int) -> list[WorkflowEvent]:
    """A workflow's events (all its resources) with ``workflow_seq > after``, in order."""
    rows = ResourceEvent.objects.filter(workflow_id=workflow_id, workflow_seq__gt=after).order_by(
        "workflow_seq"
    )[:BATCH]
    slug = Workflow.objects.filter(pk=workflow_id).values_list("slug", flat=True).first() or ""
    return [event_of(row, slug) for row in rows]


def follow_resource_events(
    schema_name: str, resource_id: str, *, after: int = 0, idle: float | None = None
) -> AsyncIterator[WorkflowEvent | None]:
    """The resource's events after ``seq`` ``after``, then live ones, until the caller stops
    (``None`` after ``idle`` seconds without one). Raises
    :class:`~agents.core.outage.DatabaseUnavailable` after ``STREAM_DB_PATIENCE_SECONDS``."""
    return follow_log(
        schema_name,
        resource_id,
        lambda cursor: read_resource_events(resource_id, cursor),
        lambda event: event.seq,
        after=after,
        idle=idle,
        batch=BATCH,
    )


def follow_workflow_events(
    schema_name: str, workflow_id: str, *, after: int = 0, idle: float | None = None
) -> AsyncIterator[WorkflowEvent | None]:
    """Like :func:`follow_resource_events` for all the workflow's resources, by
    ``workflow_seq``."""
    return follow_log(
        schema_name,
        workflow_id,
        lambda cursor: read_workflow_events(workflow_id, cursor),
        lambda event: event.workflow_seq,
        after=after,
        idle=idle,
        batch=BATCH,
    )
