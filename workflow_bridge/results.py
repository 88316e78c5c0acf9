"""Applying an agent run's result to its resource (the job the end hook deferred).

State agents: a completed run's output is written back through the binding's output mapping
only if it is still safe: the resource is still in the place the run started from and (for an
``exclusive`` binding) has not changed since; otherwise the result is recorded, not applied,
with the reason. Then the binding's ``auto_activity`` fires (the cascade). A failed run follows
its ``on_failure_activity``, or leaves the resource where it is; either way the error is in the
history. A binding with ``interval_seconds`` is triggered again while the resource stays.

Activity agents: the firing they belong to completes (tokens move, outputs and the firing's data
merge) once every required agent has succeeded, and fails as soon as one has failed.

Sync, in the tenant's schema; one transaction holding the resource's row lock.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from agents.core import queue
from agents.models import Execution, ExecutionStatus
from config.errors import DomainError
from workflow_bridge.bridge import BRIDGE_QUEUE, TRIGGER_TASK
from workflow_bridge.context import apply_output, merge_data
from workflow_bridge.history import record
from workflow_bridge.models import AgentRun, Firing, MergePolicy, Resource
from workflow_bridge.services import activity_fire, compiled_of, complete_step


def apply_result(*, schema_name: str, execution_id: str) -> str:
    """Apply one finished run's result; returns what happened (once: a second call finds the
    run no longer running)."""
    with transaction.atomic():
        run = (
            AgentRun.objects.select_for_update(of=("self",))
            .select_related("state_agent__agent", "activity_agent__agent")
            .filter(execution_id=execution_id)
            .first()
        )
        if run is None or run.status != AgentRun.Status.RUNNING:
            return "nothing to apply"
        execution = Execution.objects.get(pk=execution_id)
        resource = (
            Resource.objects.select_for_update().select_related("workflow").get(pk=run.resource_id)
        )
        if run.firing_id is not None:
            return _activity_result(schema_name, run, execution, resource)
        return _state_result(schema_name, run, execution, resource)


def _finish(run: AgentRun, status: str, reason: str = "") -> None:
    run.status = status
    run.reason = reason[:2000]
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "reason", "finished_at"])


def _error_of(execution: Execution) -> dict[str, Any]:
    return {
        "status": execution.status,
        "error_code": execution.error_code,
        "error": execution.error_message[:500],
    }


def _state_result(schema_name: str, run: AgentRun, execution: Execution, resource: Resource) -> str:
    binding = run.state_agent
    if binding is None:
        _finish(run, AgentRun.Status.STALE, "its state agent binding was deleted")
        return "binding gone"
    actor = f"agent:{binding.agent.slug}"
    still_there = bool(resource.marking.get(run.place))
    if execution.status != ExecutionStatus.COMPLETED:
        _finish(run, AgentRun.Status.FAILED, execution.error_message)
        record(
            resource,
            kind="agent_failed",
            actor=actor,
            data={"place": run.place, **_error_of(execution)},
            execution_id=execution.pk,
        )
        if binding.on_failure_activity and still_there:
            _fire(schema_name, resource, binding.on_failure_activity, actor)
        return "failed"
    changed = resource.version != run.resource_version
    if not still_there or (changed and binding.merge_policy == MergePolicy.EXCLUSIVE):
        why = (
            f"the resource left {run.place!r} while the agent ran"
            if not still_there
            else f"the resource changed while the agent ran (version {run.resource_version} → "
            f"{resource.version}) and the binding merges exclusively"
        )
        _finish(run, AgentRun.Status.STALE, why)
        record(
            resource,
            kind="agent_result_not_applied",
            actor=actor,
            data={"place": run.place, "why": why, "output": execution.output},
            execution_id=execution.pk,
        )
        return "stale"
    data, metadata, written = apply_output(
        data=resource.data,
        metadata=resource.metadata,
        output=execution.output,
        mapping=binding.output_mapping,
        agent_slug=binding.agent.slug,
    )
    resource.data, resource.metadata = data, metadata
    resource.version += 1
    resource.save(update_fields=["data", "metadata", "version", "updated_at"])
    _finish(run, AgentRun.Status.APPLIED)
    record(
        resource,
        kind="agent_result",
        actor=actor,
        data={"place": run.place, "written": written},
        execution_id=execution.pk,
    )
    if binding.auto_activity:
        _fire(schema_name, resource, binding.auto_activity, actor)
    elif binding.interval_seconds and resource.marking.get(run.place):
        queue.defer(
            TRIGGER_TASK,
            queue=BRIDGE_QUEUE,
            schedule_in_seconds=binding.interval_seconds,
            schema_name=schema_name,
            resource_id=resource.pk,
            state_agent_id=binding.pk,
            version=resource.version,
            trigger="schedule",
        )
    return "applied"


def _fire(schema_name: str, resource: Resource, activity_id: str, actor: str) -> None:
    """An agent's follow-up activity; a refusal (marking, rules) is recorded, not raised."""
    try:
        activity_fire(
            resource=resource,
            activity_id=activity_id,
            data=None,
            actor=actor,
            schema_name=schema_name,
            automatic=True,
        )
    except DomainError as refused:
        record(
            resource,
            kind="auto_activity_refused",
            actor=actor,
            data={"activity": activity_id, "why": refused.message},
        )


def _activity_result(
    schema_name: str, run: AgentRun, execution: Execution, resource: Resource
) -> str:
    assert run.firing_id is not None
    firing = Firing.objects.select_for_update().get(pk=run.firing_id)
    succeeded = execution.status == ExecutionStatus.COMPLETED
    _finish(
        run,
        AgentRun.Status.APPLIED if succeeded else AgentRun.Status.FAILED,
        "" if succeeded else execution.error_message,
    )
    if firing.status != Firing.Status.PENDING:
        return "firing already decided"
    runs = list(firing.agent_runs.select_related("activity_agent__agent"))
    required = [r for r in runs if r.activity_agent is None or r.activity_agent.required]
    failed = [r for r in required if r.status == AgentRun.Status.FAILED]
    if failed:
        return _fail_firing(
            resource,
            firing,
            f"required agent run {failed[0].execution_id} failed: "
            f"{failed[0].reason or 'no reason given'}",
        )
    if any(r.status == AgentRun.Status.RUNNING for r in required):
        return "waiting for other agents"
    data, metadata = resource.data, resource.metadata
    for done in runs:
        if done.status != AgentRun.Status.APPLIED or done.activity_agent is None:
            continue
        output = Execution.objects.values_list("output", flat=True).get(pk=done.execution_id)
        data, metadata, _ = apply_output(
            data=data,
            metadata=metadata,
            output=output,
            mapping=done.activity_agent.output_mapping,
            agent_slug=done.activity_agent.agent.slug,
        )
    try:
        complete_step(
            schema_name=schema_name,
            resource=resource,
            compiled=compiled_of(resource.workflow),
            activity_id=firing.activity,
            transition_id=firing.transition,
            data=merge_data(data, firing.data),
            patch=firing.data,
            metadata=metadata,
            actor=firing.actor,
            automatic=False,
            execution_id=execution.pk,
        )
    except DomainError as refused:
        return _fail_firing(resource, firing, f"the marking changed while agents ran: {refused}")
    firing.status = Firing.Status.COMPLETED
    firing.finished_at = timezone.now()
    firing.save(update_fields=["status", "finished_at"])
    return "firing completed"


def _fail_firing(resource: Resource, firing: Firing, why: str) -> str:
    firing.status = Firing.Status.FAILED
    firing.reason = why[:2000]
    firing.finished_at = timezone.now()
    firing.save(update_fields=["status", "reason", "finished_at"])
    record(
        resource,
        kind="activity_failed",
        actor=firing.actor,
        activity=firing.activity,
        data={"firing": firing.pk, "why": why},
    )
    return "firing failed"
