"""Workflows, their resources and the agents bound to their places (tenant schema).

A workflow is a Petri net (``definition``: places, transitions with weighted arcs, an initial
marking; or the original's state machine, which compiles to a net with one token). A resource
carries a marking (``resource.state`` is its one marked place in the state-machine case), data
and metadata, and an append-only history. State agents run when a resource enters their place;
activity agents run as part of firing an activity. Every agent run is an ordinary execution of
the execution core, linked to its resource by an :class:`AgentRun`.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.postgres.indexes import GinIndex
from django.db import models

from agents.models import Agent


def new_workflow_id() -> str:
    return f"wf_{uuid.uuid4().hex}"


def new_resource_id() -> str:
    return f"res_{uuid.uuid4().hex}"


class Workflow(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_workflow_id, editable=False)
    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # The workflow file's content (``format: circuit-breaker/workflow@1``): a state machine
    # (states, activities, initial_state) or a net (places, transitions, initial_marking).
    definition = models.JSONField()
    version = models.PositiveIntegerField(default=1)
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class WorkflowVersion(models.Model):
    """An immutable copy of a workflow's definition, one per change."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    definition = models.JSONField()
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workflow", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "version"], name="workflowversion_unique")
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} v{self.version}"


class Rule(models.Model):
    """A named condition of a workflow, versioned: a change stores a new version; activities
    name rules by ``rule_id`` and use the latest version."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="rules")
    rule_id = models.SlugField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    condition = models.JSONField()
    tags = models.JSONField(default=list, blank=True)
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workflow", "rule_id", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "rule_id", "version"], name="rule_unique_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule_id} v{self.version}"


class Resource(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_resource_id, editable=False)
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="resources")
    # place → token count (positive counts only).
    marking = models.JSONField(default=dict)
    data = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Bumped by every change: an agent's result applies only to the version it started from
    # (or merges commutatively), never over a newer state.
    version = models.PositiveIntegerField(default=1)
    # Consecutive entries into agent places without a manual step (the cascade's loop bound).
    agent_streak = models.PositiveIntegerField(default=0)
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["workflow", "-created_at"], name="resource_workflow_recent"),
            GinIndex(fields=["marking"], name="resource_marking_gin"),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def state(self) -> str | None:
        """The one marked place of a one-token resource (the original's ``resource.state``)."""
        marking: dict[str, int] = self.marking or {}
        marked = [place for place, count in marking.items() if count]
        if len(marked) == 1 and marking[marked[0]] == 1:
            return marked[0]
        return None


class ResourceEvent(models.Model):
    """One entry of a resource's history, numbered from 1: who did what, when, from which
    marking to which, with what data.

    It is also the event log the resource and workflow streams read (``workflow_bridge.events``):
    ``seq`` numbers the resource's entries, ``workflow_seq`` the entries of all the resources of
    its workflow; both in commit order, without gaps, so a cursor on either misses nothing."""

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="history")
    seq = models.PositiveIntegerField()
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="events")
    workflow_seq = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=32)
    actor = models.CharField(max_length=200, blank=True)
    activity = models.CharField(max_length=200, blank=True)
    from_marking = models.JSONField(default=dict)
    to_marking = models.JSONField(default=dict)
    data = models.JSONField(default=dict, blank=True)
    execution_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["resource", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["resource", "seq"], name="resourceevent_unique_seq"),
            models.UniqueConstraint(
                fields=["workflow", "workflow_seq"], name="resourceevent_unique_workflow_seq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.resource_id}#{self.seq} {self.kind}"


class MergePolicy(models.TextChoices):
    # The result applies only if the resource is still where the run started (same version).
    EXCLUSIVE = "exclusive", "Only onto the state the run started from"
    # The result merges whatever happened since (the agent's writes commute with others').
    COMMUTATIVE = "commutative", "Merge whatever happened since"


class StateAgent(models.Model):
    """An agent bound to a place of a workflow: it runs when a resource enters the place."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="state_agents")
    place = models.CharField(max_length=100)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="state_bindings")
    # Rule ids of the workflow that must all pass for the agent to run.
    trigger_rules = models.JSONField(default=list, blank=True)
    # Agent input fields ← context dot paths (``{"text": "data.document"}``).
    input_mapping = models.JSONField(default=dict, blank=True)
    # Resource paths ← output paths (``{"data.summary": "output.summary"}``).
    output_mapping = models.JSONField(default=dict, blank=True)
    # Per-run LLM parameter overrides (temperature, max_tokens, ...).
    parameters = models.JSONField(default=dict, blank=True)
    auto_activity = models.CharField(max_length=100, blank=True)
    on_failure_activity = models.CharField(max_length=100, blank=True)
    initial_delay_seconds = models.FloatField(null=True, blank=True)
    interval_seconds = models.FloatField(null=True, blank=True)
    max_executions = models.PositiveIntegerField(null=True, blank=True)
    retry = models.JSONField(null=True, blank=True)
    merge_policy = models.CharField(
        max_length=16, choices=MergePolicy.choices, default=MergePolicy.EXCLUSIVE
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workflow", "place", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "place", "agent"], name="stateagent_unique_binding"
            )
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id}:{self.place} → {self.agent_id}"


class ActivityAgent(models.Model):
    """An agent run as part of firing an activity; a required one must succeed for the
    activity's transition to complete."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="activity_agents")
    activity = models.CharField(max_length=100)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="activity_bindings")
    input_mapping = models.JSONField(default=dict, blank=True)
    output_mapping = models.JSONField(default=dict, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    required = models.BooleanField(default=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workflow", "activity", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "activity", "agent"], name="activityagent_unique_binding"
            )
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id}:{self.activity} → {self.agent_id}"


class Firing(models.Model):
    """An activity fired on a resource that waits for its activity agents: the transition
    completes (tokens move, data merges) when every required agent has succeeded, or fails."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for its agents"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="firings")
    activity = models.CharField(max_length=100)
    transition = models.CharField(max_length=200)
    data = models.JSONField(default=dict, blank=True)
    actor = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.resource_id}: {self.activity} ({self.status})"


class AgentRun(models.Model):
    """An execution the bridge started for a resource, and what became of its result."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        APPLIED = "applied", "Result applied"
        STALE = "stale", "Result not applied (the resource moved on)"
        FAILED = "failed", "Run failed"

    execution_id = models.CharField(max_length=64, unique=True)
    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="agent_runs")
    state_agent = models.ForeignKey(
        StateAgent, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    activity_agent = models.ForeignKey(
        ActivityAgent, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    firing = models.ForeignKey(
        Firing, null=True, blank=True, on_delete=models.CASCADE, related_name="agent_runs"
    )
    place = models.CharField(max_length=100, blank=True)
    # The resource's version when the run started (stale check) and why it ran.
    resource_version = models.PositiveIntegerField()
    trigger = models.CharField(max_length=16)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["resource", "-created_at"], name="agentrun_resource")]

    def __str__(self) -> str:
        return f"{self.execution_id} ({self.status})"

    def describe(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "place": self.place,
            "trigger": self.trigger,
            "status": self.status,
            "reason": self.reason,
        }


class WorkflowEventCounter(models.Model):
    """The last ``workflow_seq`` given to an event of the workflow. Its row is locked from the
    first event a transaction records until that transaction ends, so the workflow's events
    commit in the order of their numbers (``workflow_bridge.events.next_workflow_seq``)."""

    workflow = models.OneToOneField(
        Workflow, primary_key=True, on_delete=models.CASCADE, related_name="event_counter"
    )
    last_seq = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.workflow_id}: {self.last_seq}"


class EventOutbox(models.Model):
    """A message for NATS JetStream, written in the transaction of the event it carries (only
    while ``NATS_URL`` is set) and marked published once JetStream has acknowledged it
    (``workflow_bridge.nats``). ``msg_id`` is sent as ``Nats-Msg-Id``: a message published
    again after a lost acknowledgement is dropped by JetStream as a duplicate."""

    subject = models.CharField(max_length=255)
    msg_id = models.CharField(max_length=200, unique=True)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["id"],
                condition=models.Q(published_at__isnull=True),
                name="eventoutbox_pending",
            ),
            models.Index(
                fields=["published_at"],
                condition=models.Q(published_at__isnull=False),
                name="eventoutbox_published",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} {self.msg_id}"
