"""Writes of workflows, rules and resources (current tenant schema; agent bindings are in
``workflow_bridge.binding_services``).

Firing an activity (:func:`activity_fire`) locks the resource's row, checks the marking **and**
the activity's rules against the data the resource would have, merges the given data (JSON
merge patch), records the step in the resource's history and hands the places it entered to the
bridge, all in one transaction: two clients firing at once cannot both consume one token, and a
rolled-back step leaves no agent run behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import ProtectedError

from config.errors import Conflict, NotFound, ValidationFailed
from tenants.audit.services import audit_record
from workflow_bridge import bridge
from workflow_bridge.context import merge_data
from workflow_bridge.definitions import (
    Compiled,
    activity_verdicts,
    compile_definition,
    fire_transition,
    marked_places,
)
from workflow_bridge.history import record
from workflow_bridge.models import (
    ActivityAgent,
    Firing,
    Resource,
    Rule,
    Workflow,
    WorkflowVersion,
)
from workflow_bridge.net import analyze
from workflow_bridge.rules import check_rule, latest_rules
from workflow_bridge.selectors import marked_places_in_use

# ---- workflows ----


def compiled_of(workflow: Workflow) -> Compiled:
    return compile_definition(workflow.definition)


def workflow_save(
    *, definition: dict[str, Any], actor: str, schema_name: str, workflow: Workflow | None = None
) -> Workflow:
    """Create a workflow from its definition (the workflow file's content), or store a changed
    definition as its next version. A change may not remove a place that holds tokens of a
    resource. Rules listed in the definition are stored (a changed rule: a new version)."""
    compiled = workflow_check(definition=definition, workflow=workflow)
    slug = str(definition.get("slug") or "")
    with transaction.atomic():
        if workflow is None:
            if Workflow.objects.filter(slug=slug).exists():
                raise Conflict(f"slug: a workflow {slug!r} already exists")
            workflow = Workflow.objects.create(
                slug=slug,
                name=str(definition.get("name") or slug),
                description=str(definition.get("description") or ""),
                definition=definition,
                created_by=actor[:200],
            )
            action = "workflow.create"
        else:
            workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
            if definition == workflow.definition:
                return workflow
            if slug != workflow.slug and Workflow.objects.filter(slug=slug).exists():
                raise Conflict(f"slug: a workflow {slug!r} already exists")
            _refuse_removing_marked_places(workflow, compiled)
            workflow.slug = slug
            workflow.name = str(definition.get("name") or slug)
            workflow.description = str(definition.get("description") or "")
            workflow.definition = definition
            workflow.version += 1
            workflow.save()
            action = "workflow.update"
        WorkflowVersion.objects.create(
            workflow=workflow,
            version=workflow.version,
            definition=definition,
            created_by=actor[:200],
        )
        for index, rule in enumerate(definition.get("rules") or []):
            try:
                rule_save(workflow=workflow, data=rule, actor=actor)
            except ValidationFailed as exc:  # name the rule: "rules[1].condition: ..."
                where = f"rules[{index}]"
                raise ValidationFailed(
                    f"{where}.{exc.message}", details={where: [exc.message]}
                ) from None
    audit_record(
        schema_name=schema_name,
        actor=actor,
        action=action,
        target_type="workflow",
        target_id=workflow.pk,
        details={"version": workflow.version},
    )
    return workflow


def workflow_check(*, definition: dict[str, Any], workflow: Workflow | None = None) -> Compiled:
    """What :func:`workflow_save` refuses, refused the same way, storing nothing: a definition
    that does not compile, a rule that does not check, a slug another workflow has, a change
    that removes a place holding tokens. The message names the field (``rules[1].condition:
    ...``), so a form can show it where it belongs. Returns the compiled definition."""
    compiled = compile_definition(definition)
    slug = str(definition.get("slug") or "")
    taken = Workflow.objects.filter(slug=slug)
    if workflow is not None:
        taken = taken.exclude(pk=workflow.pk)
    if taken.exists():
        raise Conflict(f"slug: a workflow {slug!r} already exists")
    for index, rule in enumerate(definition.get("rules") or []):
        try:
            check_rule(rule)
        except ValidationFailed as exc:
            field, _, message = exc.message.partition(":")
            where = f"rules[{index}]" if field == "rule" else f"rules[{index}].{field}"
            raise ValidationFailed(f"{where}:{message}") from None
    if workflow is not None:
        _refuse_removing_marked_places(workflow, compiled)
    return compiled


def workflow_delete(*, workflow: Workflow, actor: str, schema_name: str) -> None:
    """Delete a workflow with its versions, rules and agent bindings; refused (409) while it
    has resources. The workflow's row is locked first: a resource being created at the same
    time holds a key-share lock on it, so one of the two waits for the other."""
    with transaction.atomic():
        locked = Workflow.objects.select_for_update().filter(pk=workflow.pk).first()
        if locked is None:
            raise NotFound("Workflow not found.")
        count = Resource.objects.filter(workflow=locked).count()
        if count:
            raise Conflict(
                f"workflow {locked.slug!r} has {count} resource{'s' if count != 1 else ''}; "
                "it can be deleted once it has none",
                details={"resources": count},
            )
        try:
            locked.delete()
        except ProtectedError:  # a resource created since the count
            raise Conflict(
                f"workflow {locked.slug!r} has resources; a workflow with resources cannot be "
                "deleted"
            ) from None
    audit_record(
        schema_name=schema_name,
        actor=actor,
        action="workflow.delete",
        target_type="workflow",
        target_id=workflow.pk,
        details={"slug": locked.slug, "version": locked.version},
    )


def _refuse_removing_marked_places(workflow: Workflow, compiled: Compiled) -> None:
    # Two indexed queries, not a walk over every resource (an admin form asks this too).
    lost = sorted(set(marked_places_in_use(workflow_id=workflow.pk)) - set(compiled.net.places))
    if lost:
        holder = Resource.objects.filter(workflow=workflow, marking__has_key=lost[0]).first()
        raise ValidationFailed(
            f"places: {lost[0]!r} holds tokens of resource {holder.pk if holder else '?'}; "
            "move them before removing the place"
        )


# ---- rules ----


def rule_save(*, workflow: Workflow, data: dict[str, Any], actor: str) -> Rule:
    """Store a rule (``{id, name?, description?, condition, tags?}``); a changed rule becomes
    its next version, an unchanged one stays as it is."""
    rule_id, condition, tags = check_rule(data)
    latest = Rule.objects.filter(workflow=workflow, rule_id=rule_id).order_by("-version").first()
    name = str(data.get("name") or "")
    description = str(data.get("description") or "")
    if latest is not None and (
        latest.condition == condition
        and latest.tags == tags
        and latest.name == name
        and latest.description == description
    ):
        return latest
    return Rule.objects.create(
        workflow=workflow,
        rule_id=rule_id,
        version=(latest.version + 1) if latest else 1,
        name=name,
        description=description,
        condition=condition,
        tags=tags,
        created_by=actor[:200],
    )


# ---- resources ----


def resource_create(
    *,
    workflow: Workflow,
    data: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
    actor: str,
    schema_name: str,
) -> Resource:
    """A resource with the workflow's initial marking; agents of its places are triggered."""
    compiled = compiled_of(workflow)
    _object(data, "data")
    _object(metadata, "metadata")
    with transaction.atomic():
        resource = Resource.objects.create(
            workflow=workflow,
            marking=dict(compiled.initial_marking),
            data=data or {},
            metadata=metadata or {},
            created_by=actor[:200],
        )
        record(
            resource,
            kind="created",
            actor=actor[:200],
            from_marking={},
            to_marking=resource.marking,
            data={"data": resource.data, "metadata": resource.metadata},
        )
        bridge.entered(
            schema_name=schema_name,
            resource=resource,
            places=marked_places(resource.marking),
            automatic=False,
            actor=actor,
        )
    return resource


def _object(value: Any, field: str) -> None:
    if value is not None and not isinstance(value, dict):
        raise ValidationFailed(f"{field}: must be a JSON object")


@dataclass(frozen=True)
class Fired:
    """What firing an activity did: the resource after it, or the firing still waiting for
    its activity agents."""

    resource: Resource
    firing: Firing | None = None


def activity_fire(
    *,
    resource: Resource,
    activity_id: str,
    data: dict[str, Any] | None,
    actor: str,
    schema_name: str,
    automatic: bool = False,
) -> Fired:
    """Fire ``activity_id`` on the resource: its marking must enable the activity and its
    rules must pass (evaluated against the data the resource would have). With activity
    agents, the step waits for them (a :class:`Firing`); otherwise tokens move and data merges
    now. ``automatic``: an agent's auto activity (the cascade), not a person's step."""
    _object(data, "data")
    with transaction.atomic():
        locked = Resource.objects.select_for_update().select_related("workflow").get(pk=resource.pk)
        compiled = compiled_of(locked.workflow)
        patched = merge_data(locked.data, data or {})
        verdict = activity_verdicts(
            compiled,
            locked.marking,
            {"data": patched, "metadata": locked.metadata},
            latest_rules(locked.workflow),
            only=activity_id,
        )[0]
        if not verdict.allowed:
            raise Conflict(
                f"activity {activity_id!r} cannot fire now: {verdict.explanation}",
                details={"activity": activity_id, "explanation": verdict.explanation},
            )
        assert verdict.transition is not None
        agents = list(
            ActivityAgent.objects.select_related("agent").filter(
                workflow=locked.workflow, activity=activity_id, enabled=True
            )
        )
        if agents:
            firing = Firing.objects.create(
                resource=locked,
                activity=activity_id,
                transition=verdict.transition,
                data=data or {},
                actor=actor[:200],
            )
            record(
                locked,
                kind="activity_pending",
                actor=actor[:200],
                activity=activity_id,
                from_marking=locked.marking,
                to_marking=locked.marking,
                data={"data": data or {}, "firing": firing.pk},
            )
            bridge.start_activity_agents(
                schema_name=schema_name, resource=locked, firing=firing, agents=agents
            )
            return Fired(locked, firing)
        moved = complete_step(
            schema_name=schema_name,
            resource=locked,
            compiled=compiled,
            activity_id=activity_id,
            transition_id=verdict.transition,
            data=patched,
            patch=data or {},
            actor=actor,
            automatic=automatic,
        )
    return Fired(moved)


def complete_step(
    *,
    schema_name: str,
    resource: Resource,
    compiled: Compiled,
    activity_id: str,
    transition_id: str,
    data: dict[str, Any],
    patch: dict[str, Any],
    actor: str,
    automatic: bool,
    metadata: dict[str, Any] | None = None,
    execution_id: str = "",
) -> Resource:
    """Move the tokens of ``transition_id``, store the merged data, record the step and hand
    the newly marked places to the bridge (caller holds the resource's row lock)."""
    before = dict(resource.marking)
    after = fire_transition(compiled, before, transition_id)
    resource.marking = after
    resource.data = data
    if metadata is not None:
        resource.metadata = metadata
    resource.version += 1
    if not automatic:
        resource.agent_streak = 0  # a person's step ends any cascade
    resource.save(
        update_fields=["marking", "data", "metadata", "version", "agent_streak", "updated_at"]
    )
    record(
        resource,
        kind="activity",
        actor=actor[:200],
        activity=activity_id,
        from_marking=before,
        to_marking=after,
        data={"data": patch},
        execution_id=execution_id,
    )
    entered = [place for place in marked_places(after) if after[place] > before.get(place, 0)]
    bridge.entered(
        schema_name=schema_name,
        resource=resource,
        places=entered,
        automatic=automatic,
        actor=actor,
    )
    return resource


# ---- analysis ----


def workflow_analysis(workflow: Workflow) -> dict[str, Any]:
    """Structural analysis of the workflow's net (boundedness, deadlocks, dead transitions,
    never-marked places), JSON-ready with explanations."""
    compiled = compiled_of(workflow)
    return dict(analyze(compiled.net, final_places=compiled.final_places).as_dict())


# ---- the places a resource is in ----


def available_activities(resource: Resource) -> list[dict[str, Any]]:
    """Every activity of the resource's workflow: may it fire now, and why (not)."""
    compiled = compiled_of(resource.workflow)
    verdicts = activity_verdicts(
        compiled,
        resource.marking,
        {"data": resource.data, "metadata": resource.metadata},
        latest_rules(resource.workflow),
    )
    return [verdict.as_dict() for verdict in verdicts]


def trigger_agents(*, resource: Resource, schema_name: str, actor: str = "") -> int:
    """Run the state agents of the places the resource is in now (a person asked), in the
    background; returns how many were queued."""
    with transaction.atomic():
        locked = Resource.objects.select_for_update().get(pk=resource.pk)
        return bridge.entered(
            schema_name=schema_name,
            resource=locked,
            places=marked_places(locked.marking),
            automatic=False,
            cause="manual",
            actor=actor,
        )
