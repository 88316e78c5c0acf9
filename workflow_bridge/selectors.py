"""Reads of workflows, rules, resources and agent bindings, in the current schema (the request's
tenant, or one entered with ``schema_context``). Everything a caller names by id goes through a
``*_get`` here, which answers ``NotFound`` for what this schema does not hold: another tenant's
objects live in another schema and are never found.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import Count, QuerySet

from agents.models import Execution
from config.errors import NotFound
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

# ---- workflows ----


def workflow_get(ref: str) -> Workflow:
    """A workflow by id or slug."""
    workflow = Workflow.objects.filter(pk=ref).first() or Workflow.objects.filter(slug=ref).first()
    if workflow is None:
        raise NotFound("Workflow not found.")
    return workflow


def workflow_list() -> QuerySet[Workflow]:
    """Every workflow by slug, each with ``resource_count``."""
    return Workflow.objects.annotate(resource_count=Count("resources")).order_by("slug")


def workflow_resource_count(workflow: Workflow) -> int:
    return Resource.objects.filter(workflow=workflow).count()


def workflow_versions(workflow: Workflow) -> list[WorkflowVersion]:
    """Every stored version of the definition, newest first."""
    return list(WorkflowVersion.objects.filter(workflow=workflow).order_by("-version"))


def workflow_token_counts(workflow: Workflow) -> dict[str, int]:
    """Tokens per place, summed over the workflow's resources (one aggregate in the database,
    however many resources there are)."""
    table = connection.ops.quote_name(Resource._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.key, SUM((m.value)::bigint) FROM {table} AS r, "  # noqa: S608 (a quoted model table name, no input)
            "jsonb_each_text(r.marking) AS m WHERE r.workflow_id = %s GROUP BY m.key",
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


# ---- rules ----


def rule_latest_list(workflow: Workflow) -> list[Rule]:
    """Each rule of the workflow at its latest version, by rule id."""
    return list(
        Rule.objects.filter(workflow=workflow).order_by("rule_id", "-version").distinct("rule_id")
    )


def rule_versions(workflow: Workflow, rule_id: str) -> list[Rule]:
    """Every version of one rule, newest first; ``NotFound`` when the workflow has no such
    rule."""
    versions = list(Rule.objects.filter(workflow=workflow, rule_id=rule_id).order_by("-version"))
    if not versions:
        raise NotFound("Rule not found.")
    return versions


def rule_latest_version(workflow: Workflow, rule_id: str) -> int | None:
    rule = Rule.objects.filter(workflow=workflow, rule_id=rule_id).order_by("-version").first()
    return rule.version if rule is not None else None


# ---- resources ----


def resource_get(resource_id: str, *, workflow: Workflow | None = None) -> Resource:
    """A resource (with its workflow), of ``workflow`` when given."""
    queryset = Resource.objects.select_related("workflow")
    if workflow is not None:
        queryset = queryset.filter(workflow=workflow)
    resource = queryset.filter(pk=resource_id).first()
    if resource is None:
        raise NotFound("Resource not found.")
    return resource


def resource_list(
    *, workflow: Workflow, place: str | None = None, state: str | None = None
) -> QuerySet[Resource]:
    """The workflow's resources, newest first. ``place``: holding at least one token there
    (the marking's GIN index serves it); ``state``: a one-token resource in that place."""
    queryset = Resource.objects.filter(workflow=workflow)
    if place is not None:
        queryset = queryset.filter(marking__has_key=place)
    if state is not None:
        queryset = queryset.filter(marking={state: 1})
    return queryset.order_by("-created_at", "-id")


def resource_history(resource: Resource) -> list[ResourceEvent]:
    return list(ResourceEvent.objects.filter(resource=resource).order_by("seq"))


def resource_agent_runs(resource: Resource) -> list[AgentRun]:
    """The agent runs started for the resource, newest first, with their bindings' agents and
    firings (no query per run)."""
    return list(
        AgentRun.objects.filter(resource=resource)
        .select_related("state_agent__agent", "activity_agent__agent", "firing")
        .order_by("-created_at", "-id")
    )


def execution_statuses(execution_ids: list[str]) -> dict[str, str]:
    """Execution id → its status (one query)."""
    if not execution_ids:
        return {}
    rows = Execution.objects.filter(pk__in=execution_ids).values_list("id", "status")
    return {str(pk): str(status) for pk, status in rows}


def resource_firings(resource: Resource) -> list[Firing]:
    """Activities fired on the resource that waited for activity agents, newest first."""
    return list(Firing.objects.filter(resource=resource).order_by("-created_at", "-id"))


def firing_execution_ids(firing: Firing) -> list[str]:
    return list(
        AgentRun.objects.filter(firing=firing)
        .order_by("created_at")
        .values_list("execution_id", flat=True)
    )


# ---- agent bindings ----


def state_agent_list(workflow: Workflow) -> list[StateAgent]:
    return list(StateAgent.objects.filter(workflow=workflow).select_related("agent"))


def state_agent_get(workflow: Workflow, binding_id: int) -> StateAgent:
    binding = (
        StateAgent.objects.filter(workflow=workflow, pk=binding_id).select_related("agent").first()
    )
    if binding is None:
        raise NotFound("State agent binding not found.")
    return binding


def activity_agent_list(workflow: Workflow) -> list[ActivityAgent]:
    return list(ActivityAgent.objects.filter(workflow=workflow).select_related("agent"))


def activity_agent_get(workflow: Workflow, binding_id: int) -> ActivityAgent:
    binding = (
        ActivityAgent.objects.filter(workflow=workflow, pk=binding_id)
        .select_related("agent")
        .first()
    )
    if binding is None:
        raise NotFound("Activity agent binding not found.")
    return binding
