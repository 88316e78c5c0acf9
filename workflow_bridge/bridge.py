"""The bridge: when a resource enters a place, its state agents run; activity agents run as part
of a firing. Every run goes through the execution core (``agents.core.queue_run``, background
mode on the job queue) and is an ordinary execution, linked to its resource by an
:class:`AgentRun`; the bridge never calls the engine.

- :func:`entered` (in the transaction that moved the resource) defers one trigger job per
  state agent of the places entered, after its ``initial_delay_seconds``: agents never run
  inside the request that moved the resource. A cascade (an agent's auto activity entering the
  next agent place) counts the resource's ``agent_streak``; past ``WORKFLOW_MAX_AGENT_STREAK``
  in a row it stops, with the reason in the history.
- :func:`trigger` (the trigger job, in a worker) checks the resource is still where it was
  sent (same version) and the agent's trigger rules, then queues the run with the end hook
  :data:`APPLY_HOOK`.
- :func:`run_ended` is that hook: in the transaction that stores the run's end, it defers the
  job that applies the result (``workflow_bridge.results``), so a result is applied once.

Sync functions, run in the tenant's schema.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction

from agents.core import queue, queue_run
from agents.core.requests import RunRequest
from agents.models import Execution
from config.errors import DomainError
from tenants.context import tenant_connection
from tenants.models import Tenant
from tenants.principals import Principal
from tenants.roles import Role
from workflow_bridge.context import resource_to_context
from workflow_bridge.history import record
from workflow_bridge.models import (
    ActivityAgent,
    AgentRun,
    Firing,
    Resource,
    StateAgent,
    Workflow,
)
from workflow_bridge.rules import evaluate_rules

logger = logging.getLogger(__name__)

APPLY_HOOK = "workflow_bridge.apply"
TRIGGER_TASK = "workflow_bridge.trigger_state_agent"
APPLY_TASK = "workflow_bridge.apply_agent_result"
# Short database work: it shares the executions queue, ahead of the runs (priority 0 is above
# every tenant's run priority, which is minus its load).
BRIDGE_QUEUE = queue.EXECUTIONS_QUEUE
DEFAULT_INPUT_MAPPING = {"data": "data"}


def workflow_principal(schema_name: str, workflow: Workflow) -> Principal:
    """The tenant principal a workflow's agent runs act as (``workflow:<slug>``)."""
    tenant = Tenant.objects.only("pk", "slug").get(schema_name=schema_name)
    return Principal(
        kind="workflow",
        identifier=workflow.slug,
        role=Role.USER,
        tenant_id=tenant.pk,
        tenant_slug=tenant.slug,
        schema_name=schema_name,
    )


def entered(
    *,
    schema_name: str,
    resource: Resource,
    places: list[str],
    automatic: bool,
    cause: str = "entered",
    actor: str = "",
) -> int:
    """The resource entered ``places`` (caller's transaction, row locked or new): defer the
    trigger of each enabled state agent bound there. ``automatic``: entered by an agent's auto
    activity (the cascade's loop bound counts these). Returns how many were deferred."""
    if not places:
        return 0
    bindings = list(
        StateAgent.objects.filter(workflow_id=resource.workflow_id, place__in=places, enabled=True)
    )
    if not bindings:
        return 0
    if automatic:
        resource.agent_streak += 1
        resource.save(update_fields=["agent_streak", "updated_at"])
        if resource.agent_streak > settings.WORKFLOW_MAX_AGENT_STREAK:
            record(
                resource,
                kind="cascade_stopped",
                actor="workflow",
                data={
                    "reason": f"entered agent places {resource.agent_streak} times in a row "
                    f"(WORKFLOW_MAX_AGENT_STREAK={settings.WORKFLOW_MAX_AGENT_STREAK}); "
                    "a person's step starts it again",
                    "places": places,
                },
            )
            return 0
    for binding in bindings:
        queue.defer(
            TRIGGER_TASK,
            queue=BRIDGE_QUEUE,
            schedule_in_seconds=binding.initial_delay_seconds,
            schema_name=schema_name,
            resource_id=resource.pk,
            state_agent_id=binding.pk,
            version=resource.version,
            trigger=cause,
            actor=actor[:200],
        )
    return len(bindings)


def trigger(
    *,
    schema_name: str,
    resource_id: str,
    state_agent_id: int,
    version: int,
    trigger: str,
    actor: str = "",
) -> str:
    """Run a state agent for a resource now, if it still applies; returns what happened.
    ``version``: the resource's version the trigger was sent for (``manual`` ignores it).
    One transaction holding the resource's row: the run, its link and the history entry stand
    or fall together."""
    with transaction.atomic():
        return _trigger(schema_name, resource_id, state_agent_id, version, trigger, actor)


def _trigger(
    schema_name: str,
    resource_id: str,
    state_agent_id: int,
    version: int,
    trigger: str,
    actor: str,
) -> str:
    resource = (
        Resource.objects.select_for_update()
        .select_related("workflow")
        .filter(pk=resource_id)
        .first()
    )
    binding = StateAgent.objects.select_related("agent").filter(pk=state_agent_id).first()
    if resource is None or binding is None or not binding.enabled:
        return "gone"
    if not resource.marking.get(binding.place):
        return "left the place"
    if trigger != "manual" and resource.version != version:
        return "moved on"
    if binding.max_executions is not None:
        done = AgentRun.objects.filter(resource=resource, state_agent=binding).count()
        if done >= binding.max_executions:
            return "max executions reached"
    view = {"data": resource.data, "metadata": resource.metadata}
    passed, explanation = evaluate_rules(resource.workflow, binding.trigger_rules, view)
    if not passed:
        record(
            resource,
            kind="agent_skipped",
            actor="workflow",
            data={"agent": binding.agent.slug, "place": binding.place, "why": explanation},
        )
        return "trigger rules not met"
    context = resource_to_context(
        schema_name=schema_name,
        resource_id=resource.pk,
        workflow_id=resource.workflow_id,
        place=binding.place,
        data=resource.data,
        metadata=resource.metadata,
        user_context=_user_context(actor),
    )
    execution = _queue(
        schema_name,
        resource,
        agent_id=binding.agent_id,
        context=context,
        parameters=binding.parameters,
        input_mapping=binding.input_mapping,
        retry=binding.retry,
    )
    if execution is None:
        return "refused"
    AgentRun.objects.create(
        execution_id=execution.pk,
        resource=resource,
        state_agent=binding,
        place=binding.place,
        resource_version=resource.version,
        trigger=trigger,
    )
    record(
        resource,
        kind="agent_triggered",
        actor="workflow",
        data={"agent": binding.agent.slug, "place": binding.place, "trigger": trigger},
        execution_id=execution.pk,
    )
    return "started"


def _user_context(actor: str) -> dict[str, Any] | None:
    """The person whose step led here (``user:ann``, ``api_key:…``), for the agent's context;
    none when an agent's own activity did (the cascade)."""
    if not actor or actor.startswith(("agent:", "workflow:")):
        return None
    return {"user_id": actor}


def _queue(
    schema_name: str,
    resource: Resource,
    *,
    agent_id: str,
    context: dict[str, Any],
    parameters: dict[str, Any],
    input_mapping: dict[str, str],
    retry: dict[str, Any] | None,
) -> Execution | None:
    request = RunRequest(
        agent_ref=agent_id,
        context=context,
        parameters=dict(parameters or {}),
        # Without a mapping of its own, the agent is given the resource's data.
        input_mapping=dict(input_mapping) if input_mapping else DEFAULT_INPUT_MAPPING,
        retry=retry,
        mode="background",
        notify=APPLY_HOOK,
    )
    try:
        return queue_run(
            principal=workflow_principal(schema_name, resource.workflow), request=request
        )
    except DomainError as refused:  # the agent was disabled or deleted since it was bound
        record(
            resource,
            kind="agent_refused",
            actor="workflow",
            data={"agent": agent_id, "why": refused.message},
        )
        return None


def start_activity_agents(
    *, schema_name: str, resource: Resource, firing: Firing, agents: list[ActivityAgent]
) -> None:
    """Queue the activity agents of a firing (caller's transaction)."""
    for binding in agents:
        context = resource_to_context(
            schema_name=schema_name,
            resource_id=resource.pk,
            workflow_id=resource.workflow_id,
            place=",".join(sorted(place for place, n in resource.marking.items() if n)),
            data=resource.data,
            metadata=resource.metadata,
            transition_id=firing.transition,
        )
        execution = _queue(
            schema_name,
            resource,
            agent_id=binding.agent_id,
            context=context,
            parameters=binding.parameters,
            input_mapping=binding.input_mapping,
            retry=None,
        )
        if execution is None:
            continue
        AgentRun.objects.create(
            execution_id=execution.pk,
            resource=resource,
            activity_agent=binding,
            firing=firing,
            resource_version=resource.version,
            trigger="activity",
        )
        record(
            resource,
            kind="agent_triggered",
            actor="workflow",
            data={"agent": binding.agent.slug, "activity": firing.activity, "trigger": "activity"},
            execution_id=execution.pk,
        )


def run_ended(execution: Execution) -> None:
    """The execution core's end hook (inside the transaction that stores the run's end):
    defer the job that applies the result to its resource."""
    if AgentRun.objects.filter(execution_id=execution.pk).exists():
        queue.defer(
            APPLY_TASK,
            queue=BRIDGE_QUEUE,
            schema_name=tenant_connection.schema_name,
            execution_id=execution.pk,
        )
