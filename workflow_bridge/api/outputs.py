"""What the workflow endpoints answer: one ``TypedDict`` per wire format and the function that
builds it from the models (``docs.openapi`` derives the OpenAPI schemas from the TypedDicts).

Timestamps are ISO 8601 strings; ids are the ones the URLs take.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

from workflow_bridge.models import (
    ActivityAgent,
    AgentRun,
    Firing,
    Resource,
    ResourceEvent,
    Rule,
    StateAgent,
    Workflow,
    WorkflowVersion,
)
from workflow_bridge.net import AnalysisDict, RuleResult


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# ---- workflows ----


class WorkflowSummary(TypedDict):
    id: str
    slug: str
    name: str
    description: str
    version: int
    resource_count: int
    created_by: str
    created_at: str
    updated_at: str


class WorkflowDetail(WorkflowSummary):
    """A workflow with its definition (the workflow file's content) at its current version."""

    definition: dict[str, Any]


class WorkflowList(TypedDict):
    workflows: list[WorkflowSummary]


class WorkflowVersionJson(TypedDict):
    version: int
    definition: dict[str, Any]
    created_by: str
    created_at: str


class WorkflowVersionList(TypedDict):
    workflow_id: str
    versions: list[WorkflowVersionJson]


class WorkflowAnalysis(TypedDict):
    """Structural analysis of the workflow's net at its current version."""

    workflow_id: str
    version: int
    analysis: AnalysisDict


def workflow_summary(workflow: Workflow, resource_count: int) -> WorkflowSummary:
    return {
        "id": workflow.id,
        "slug": workflow.slug,
        "name": workflow.name,
        "description": workflow.description,
        "version": workflow.version,
        "resource_count": resource_count,
        "created_by": workflow.created_by,
        "created_at": workflow.created_at.isoformat(),
        "updated_at": workflow.updated_at.isoformat(),
    }


def workflow_detail(workflow: Workflow, resource_count: int) -> WorkflowDetail:
    summary = workflow_summary(workflow, resource_count)
    return {**summary, "definition": workflow.definition}


def workflow_version_json(version: WorkflowVersion) -> WorkflowVersionJson:
    return {
        "version": version.version,
        "definition": version.definition,
        "created_by": version.created_by,
        "created_at": version.created_at.isoformat(),
    }


# ---- rules ----


class RuleJson(TypedDict):
    """One version of a rule; activities and state agents use its latest version."""

    id: str
    version: int
    name: str
    description: str
    condition: dict[str, Any]
    tags: list[str]
    created_by: str
    created_at: str


class RuleList(TypedDict):
    workflow_id: str
    rules: list[RuleJson]


class RuleVersionList(TypedDict):
    workflow_id: str
    rule_id: str
    versions: list[RuleJson]


class RuleEvaluation(TypedDict):
    """A condition evaluated against ``{data, metadata}`` (given, or a resource's).
    ``explanation``: one line per condition, ``PASS``/``FAIL`` first; ``result``: the same as a
    tree (``passed``, ``explanation``, ``children``)."""

    rule_id: str | None
    version: int | None
    resource_id: str | None
    passed: bool
    explanation: str
    result: dict[str, Any]


def rule_json(rule: Rule) -> RuleJson:
    return {
        "id": rule.rule_id,
        "version": rule.version,
        "name": rule.name,
        "description": rule.description,
        "condition": rule.condition,
        "tags": list(rule.tags),
        "created_by": rule.created_by,
        "created_at": rule.created_at.isoformat(),
    }


def result_tree(result: RuleResult) -> dict[str, Any]:
    return {
        "passed": result.passed,
        "explanation": result.explanation,
        "children": [result_tree(child) for child in result.children],
    }


# ---- resources ----


class ResourceJson(TypedDict):
    """``state``: the one marked place of a one-token resource (null otherwise)."""

    id: str
    workflow_id: str
    marking: dict[str, int]
    state: str | None
    data: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    created_by: str
    created_at: str
    updated_at: str


class HistoryEntry(TypedDict):
    seq: int
    kind: str
    actor: str
    activity: str
    from_marking: dict[str, int]
    to_marking: dict[str, int]
    data: dict[str, Any]
    execution_id: str | None
    created_at: str


class AgentRunJson(TypedDict):
    """An execution the workflow started for the resource (``GET /executions/{execution_id}``)
    and what became of its result (``status``: running, applied, stale, failed)."""

    execution_id: str
    execution_status: str | None
    agent: str | None
    status: str
    reason: str
    trigger: str
    place: str
    activity: str
    firing_id: int | None
    resource_version: int
    created_at: str
    finished_at: str | None


class FiringJson(TypedDict):
    """An activity fired on a resource that waits for its activity agents (``status``:
    pending, completed, failed); ``execution_ids``: their runs."""

    id: int
    resource_id: str
    activity: str
    transition: str
    status: str
    reason: str
    actor: str
    data: dict[str, Any]
    execution_ids: list[str]
    created_at: str
    finished_at: str | None


class ResourceDetail(ResourceJson):
    history: list[HistoryEntry]
    agent_runs: list[AgentRunJson]
    firings: list[FiringJson]


class ResourcePage(TypedDict):
    resources: list[ResourceJson]
    total: int
    page: int
    page_size: int
    limit: int
    offset: int


class RuleCheck(TypedDict):
    rule: str
    passed: bool
    explanation: str


class ActivityVerdictJson(TypedDict):
    """May the activity fire now, and why (not): the marking first, then its rules."""

    activity: str
    name: str
    allowed: bool
    explanation: str
    rules: list[RuleCheck]


class AvailableActivities(TypedDict):
    resource_id: str
    version: int
    marking: dict[str, int]
    state: str | None
    activities: list[ActivityVerdictJson]


class AgentsTriggered(TypedDict):
    """How many state agents of the resource's current places were queued (each runs in a
    worker; their executions appear under ``/resources/{resource_id}/executions``)."""

    resource_id: str
    queued: int


def resource_json(resource: Resource) -> ResourceJson:
    return {
        "id": resource.id,
        "workflow_id": resource.workflow_id,
        "marking": dict(resource.marking),
        "state": resource.state,
        "data": resource.data,
        "metadata": resource.metadata,
        "version": resource.version,
        "created_by": resource.created_by,
        "created_at": resource.created_at.isoformat(),
        "updated_at": resource.updated_at.isoformat(),
    }


def history_entry(event: ResourceEvent) -> HistoryEntry:
    return {
        "seq": event.seq,
        "kind": event.kind,
        "actor": event.actor,
        "activity": event.activity,
        "from_marking": event.from_marking,
        "to_marking": event.to_marking,
        "data": event.data,
        "execution_id": event.execution_id or None,
        "created_at": event.created_at.isoformat(),
    }


def agent_run_json(run: AgentRun, execution_status: str | None) -> AgentRunJson:
    binding: StateAgent | ActivityAgent | None = run.state_agent or run.activity_agent
    return {
        "execution_id": run.execution_id,
        "execution_status": execution_status,
        "agent": binding.agent.slug if binding is not None else None,
        "status": run.status,
        "reason": run.reason,
        "trigger": run.trigger,
        "place": run.place,
        "activity": run.firing.activity if run.firing is not None else "",
        "firing_id": run.firing_id,
        "resource_version": run.resource_version,
        "created_at": run.created_at.isoformat(),
        "finished_at": _iso(run.finished_at),
    }


def firing_json(firing: Firing, execution_ids: list[str]) -> FiringJson:
    return {
        "id": firing.pk,
        "resource_id": firing.resource_id,
        "activity": firing.activity,
        "transition": firing.transition,
        "status": firing.status,
        "reason": firing.reason,
        "actor": firing.actor,
        "data": firing.data,
        "execution_ids": execution_ids,
        "created_at": firing.created_at.isoformat(),
        "finished_at": _iso(firing.finished_at),
    }


def resource_detail(
    resource: Resource,
    *,
    history: list[ResourceEvent],
    runs: list[AgentRun],
    statuses: dict[str, str],
    firings: list[Firing],
) -> ResourceDetail:
    by_firing: dict[int, list[str]] = {}
    for run in sorted(runs, key=lambda r: r.created_at):
        if run.firing_id is not None:
            by_firing.setdefault(run.firing_id, []).append(run.execution_id)
    return {
        **resource_json(resource),
        "history": [history_entry(event) for event in history],
        "agent_runs": [agent_run_json(run, statuses.get(run.execution_id)) for run in runs],
        "firings": [firing_json(f, by_firing.get(f.pk, [])) for f in firings],
    }


# ---- agent bindings ----


class StateAgentJson(TypedDict):
    """An agent bound to a place: it runs (in a worker) when a resource enters the place.
    ``agent``: the agent's slug."""

    id: int
    workflow_id: str
    place: str
    agent: str
    agent_id: str
    trigger_rules: list[str]
    input_mapping: dict[str, str]
    output_mapping: dict[str, str]
    parameters: dict[str, Any]
    auto_activity: str
    on_failure_activity: str
    initial_delay_seconds: float | None
    interval_seconds: float | None
    max_executions: int | None
    retry: dict[str, Any] | None
    merge_policy: str
    enabled: bool
    created_at: str
    updated_at: str


class StateAgentList(TypedDict):
    workflow_id: str
    state_agents: list[StateAgentJson]


class ActivityAgentJson(TypedDict):
    """An agent run as part of firing an activity; a ``required`` one must succeed for the
    transition to complete. ``agent``: the agent's slug."""

    id: int
    workflow_id: str
    activity: str
    agent: str
    agent_id: str
    input_mapping: dict[str, str]
    output_mapping: dict[str, str]
    parameters: dict[str, Any]
    required: bool
    enabled: bool
    created_at: str
    updated_at: str


class ActivityAgentList(TypedDict):
    workflow_id: str
    activity_agents: list[ActivityAgentJson]


def state_agent_json(binding: StateAgent) -> StateAgentJson:
    return {
        "id": binding.pk,
        "workflow_id": binding.workflow_id,
        "place": binding.place,
        "agent": binding.agent.slug,
        "agent_id": binding.agent_id,
        "trigger_rules": list(binding.trigger_rules),
        "input_mapping": dict(binding.input_mapping),
        "output_mapping": dict(binding.output_mapping),
        "parameters": dict(binding.parameters),
        "auto_activity": binding.auto_activity,
        "on_failure_activity": binding.on_failure_activity,
        "initial_delay_seconds": binding.initial_delay_seconds,
        "interval_seconds": binding.interval_seconds,
        "max_executions": binding.max_executions,
        "retry": binding.retry,
        "merge_policy": binding.merge_policy,
        "enabled": binding.enabled,
        "created_at": binding.created_at.isoformat(),
        "updated_at": binding.updated_at.isoformat(),
    }


def activity_agent_json(binding: ActivityAgent) -> ActivityAgentJson:
    return {
        "id": binding.pk,
        "workflow_id": binding.workflow_id,
        "activity": binding.activity,
        "agent": binding.agent.slug,
        "agent_id": binding.agent_id,
        "input_mapping": dict(binding.input_mapping),
        "output_mapping": dict(binding.output_mapping),
        "parameters": dict(binding.parameters),
        "required": binding.required,
        "enabled": binding.enabled,
        "created_at": binding.created_at.isoformat(),
        "updated_at": binding.updated_at.isoformat(),
    }
