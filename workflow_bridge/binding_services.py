"""Writes of agent bindings (current tenant schema): which agent runs when a resource enters
a place (state agents) or when an activity fires (activity agents), with their mappings, rules,
timing and retry policy. Every field is checked here, so the REST API, the admin and workflow
files refuse the same things with the same messages.
"""

from __future__ import annotations

from typing import Any

from agents.core.requests import parse_run_request
from agents.models import Agent
from agents.services.agents import agent_get
from config.errors import Conflict, NotFound, ValidationFailed
from workflow_bridge.context import check_output_mapping
from workflow_bridge.definitions import Compiled
from workflow_bridge.models import ActivityAgent, MergePolicy, StateAgent, Workflow
from workflow_bridge.net import analyze
from workflow_bridge.rules import latest_rules
from workflow_bridge.services import compiled_of

STATE_AGENT_FIELDS = frozenset(
    {
        "place",
        "agent",
        "trigger_rules",
        "input_mapping",
        "output_mapping",
        "parameters",
        "auto_activity",
        "on_failure_activity",
        "initial_delay_seconds",
        "interval_seconds",
        "max_executions",
        "retry",
        "merge_policy",
        "enabled",
    }
)
ACTIVITY_AGENT_FIELDS = frozenset(
    {"activity", "agent", "input_mapping", "output_mapping", "parameters", "required", "enabled"}
)


def _unknown(data: dict[str, Any], allowed: frozenset[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise ValidationFailed(f"{extra[0]}: unknown field")


def _mapping(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValidationFailed(f"{field}: must be an object of strings")
    return dict(value)


def _parameters(value: Any) -> dict[str, Any]:
    """LLM overrides, held to the same bounds as an execute body's parameters."""
    if value is None:
        return {}
    try:
        return parse_run_request({"input": {"parameters": value}}, agent_ref="-").parameters
    except ValidationFailed as exc:
        raise ValidationFailed(exc.message.replace("input.parameters", "parameters")) from None


def bound_agent(ref: Any) -> Agent:
    """The agent a binding names, by id or slug; a reference to no agent of this tenant names
    the field (a 400 of the binding, not a 404 of the URL)."""
    if not isinstance(ref, str) or not ref:
        raise ValidationFailed("agent: required (an agent's id or slug)")
    try:
        return agent_get(ref)
    except NotFound:
        raise ValidationFailed(f"agent: no agent {ref!r} in this tenant") from None


def _seconds(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValidationFailed(f"{field}: must be a number of seconds, 0 or more")
    return float(value)


def _flag(value: Any, field: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValidationFailed(f"{field}: must be true or false")
    return value


def _activity_from(compiled: Compiled, activity: Any, place: str, field: str) -> str:
    """An activity that exists and can start from ``place`` (a token there enables one of its
    transitions' input arcs)."""
    if not activity:
        return ""
    info = compiled.activities.get(activity) if isinstance(activity, str) else None
    if info is None:
        raise ValidationFailed(f"{field}: no activity {activity!r} in this workflow")
    starts = {
        arc.place
        for transition in compiled.net.transitions
        if transition.id in info.transitions
        for arc in transition.inputs
    }
    if place not in starts:
        raise ValidationFailed(f"{field}: activity {activity!r} does not start from {place!r}")
    return str(activity)


def state_agent_save(
    *, workflow: Workflow, data: dict[str, Any], binding: StateAgent | None = None
) -> StateAgent:
    """Bind an agent to a place (or change a binding). Refused, with the reason: a place the
    workflow does not have or that can never be marked (the net's analysis), an unknown agent,
    rules or activities, mappings that do not write to ``data.*``/``metadata.*``."""
    fields = state_agent_check(workflow=workflow, data=data, binding=binding)
    if binding is None:
        return StateAgent.objects.create(workflow=workflow, **fields)
    for name, value in fields.items():
        setattr(binding, name, value)
    binding.save(update_fields=[*fields, "updated_at"])
    return binding


def state_agent_check(
    *, workflow: Workflow, data: dict[str, Any], binding: StateAgent | None = None
) -> dict[str, Any]:
    """The fields :func:`state_agent_save` would store, or its refusal, storing nothing (an
    admin form shows the reason on the field it names)."""
    if not isinstance(data, dict):
        raise ValidationFailed("body: must be a JSON object")
    _unknown(data, STATE_AGENT_FIELDS)
    merged = {**_binding_fields(binding), **data} if binding is not None else dict(data)
    compiled = compiled_of(workflow)
    place = merged.get("place")
    if not isinstance(place, str) or not compiled.net.has_place(place):
        raise ValidationFailed(f"place: {place!r} is not a place of this workflow")
    analysis = analyze(compiled.net, final_places=compiled.final_places)
    if analysis.can_be_marked(place) is False:
        raise ValidationFailed(
            f"place: {place!r} can never be marked from the workflow's initial marking, so an "
            "agent bound there would never run"
        )
    agent = bound_agent(merged.get("agent"))
    trigger_rules = merged.get("trigger_rules") or []
    if not isinstance(trigger_rules, list) or not all(isinstance(r, str) for r in trigger_rules):
        raise ValidationFailed("trigger_rules: must be a list of rule ids")
    known = set(latest_rules(workflow))
    missing = [r for r in trigger_rules if r not in known]
    if missing:
        raise ValidationFailed(f"trigger_rules: no rule {missing[0]!r} in this workflow")
    merge_policy = merged.get("merge_policy") or MergePolicy.EXCLUSIVE
    if merge_policy not in MergePolicy.values:
        raise ValidationFailed(f"merge_policy: one of {', '.join(MergePolicy.values)}")
    max_executions = merged.get("max_executions")
    if max_executions is not None and (
        isinstance(max_executions, bool)
        or not isinstance(max_executions, int)
        or max_executions < 1
    ):
        raise ValidationFailed("max_executions: a positive integer")
    retry = merged.get("retry")
    if retry is not None:
        try:
            retry = parse_run_request(
                {"execution_config": {"retry_config": retry}}, agent_ref="-"
            ).retry
        except ValidationFailed as exc:
            message = exc.message.replace("execution_config.retry_config", "retry")
            raise ValidationFailed(message) from None
    fields = {
        "place": place,
        "agent": agent,
        "trigger_rules": trigger_rules,
        "input_mapping": _mapping(merged.get("input_mapping"), "input_mapping"),
        "output_mapping": check_output_mapping(merged.get("output_mapping") or {}),
        "parameters": _parameters(merged.get("parameters")),
        "auto_activity": _activity_from(
            compiled, merged.get("auto_activity"), place, "auto_activity"
        ),
        "on_failure_activity": _activity_from(
            compiled, merged.get("on_failure_activity"), place, "on_failure_activity"
        ),
        "initial_delay_seconds": _seconds(
            merged.get("initial_delay_seconds"), "initial_delay_seconds"
        ),
        "interval_seconds": _seconds(merged.get("interval_seconds"), "interval_seconds"),
        "max_executions": max_executions,
        "retry": retry,
        "merge_policy": merge_policy,
        "enabled": _flag(merged.get("enabled"), "enabled", True),
    }
    others = StateAgent.objects.filter(workflow=workflow, place=place, agent=agent)
    if binding is not None:
        others = others.exclude(pk=binding.pk)
    if others.exists():
        raise Conflict(f"agent {agent.slug!r} is already bound to {place!r}")
    return fields


def _binding_fields(binding: StateAgent | ActivityAgent) -> dict[str, Any]:
    names = STATE_AGENT_FIELDS if isinstance(binding, StateAgent) else ACTIVITY_AGENT_FIELDS
    fields = {name: getattr(binding, name) for name in names if name != "agent"}
    fields["agent"] = binding.agent_id
    return fields


def activity_agent_save(
    *, workflow: Workflow, data: dict[str, Any], binding: ActivityAgent | None = None
) -> ActivityAgent:
    """Run an agent as part of an activity (or change that); refused for an unknown activity
    or agent, or a mapping that does not write to ``data.*``/``metadata.*``."""
    fields = activity_agent_check(workflow=workflow, data=data, binding=binding)
    if binding is None:
        return ActivityAgent.objects.create(workflow=workflow, **fields)
    for name, value in fields.items():
        setattr(binding, name, value)
    binding.save(update_fields=[*fields, "updated_at"])
    return binding


def activity_agent_check(
    *, workflow: Workflow, data: dict[str, Any], binding: ActivityAgent | None = None
) -> dict[str, Any]:
    """The fields :func:`activity_agent_save` would store, or its refusal, storing nothing."""
    if not isinstance(data, dict):
        raise ValidationFailed("body: must be a JSON object")
    _unknown(data, ACTIVITY_AGENT_FIELDS)
    merged = {**_binding_fields(binding), **data} if binding is not None else dict(data)
    compiled = compiled_of(workflow)
    activity = merged.get("activity")
    if not isinstance(activity, str) or activity not in compiled.activities:
        raise ValidationFailed(f"activity: no activity {activity!r} in this workflow")
    agent = bound_agent(merged.get("agent"))
    fields = {
        "activity": activity,
        "agent": agent,
        "input_mapping": _mapping(merged.get("input_mapping"), "input_mapping"),
        "output_mapping": check_output_mapping(merged.get("output_mapping") or {}),
        "parameters": _parameters(merged.get("parameters")),
        "required": _flag(merged.get("required"), "required", True),
        "enabled": _flag(merged.get("enabled"), "enabled", True),
    }
    others = ActivityAgent.objects.filter(workflow=workflow, activity=activity, agent=agent)
    if binding is not None:
        others = others.exclude(pk=binding.pk)
    if others.exists():
        raise Conflict(f"agent {agent.slug!r} already runs for {activity!r}")
    return fields


def agent_binding_delete(*, binding: StateAgent | ActivityAgent) -> None:
    """Unbind an agent. Runs it already started go on (their link to the binding is cleared);
    a state agent's result is then not applied, and its run says why."""
    binding.delete()
