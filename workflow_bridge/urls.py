"""Workflow endpoints (tenant URLconf): exact paths, no trailing slash."""

from __future__ import annotations

from django.urls import path

from workflow_bridge.api import bindings, resources, rules, workflows

WORKFLOW = "workflows/<str:workflow_id>"
RESOURCE = "resources/<str:resource_id>"

urlpatterns = [
    path("workflows", workflows.WorkflowCollectionApi.as_view(), name="workflows"),
    # Before workflows/<workflow_id>: "import" is reserved, never a workflow's slug.
    path("workflows/import", workflows.WorkflowImportApi.as_view(), name="workflow-import"),
    path(WORKFLOW, workflows.WorkflowDetailApi.as_view(), name="workflow-detail"),
    path(
        f"{WORKFLOW}/versions",
        workflows.WorkflowVersionListApi.as_view(),
        name="workflow-versions",
    ),
    path(
        f"{WORKFLOW}/analysis",
        workflows.WorkflowAnalysisApi.as_view(),
        name="workflow-analysis",
    ),
    path(
        f"{WORKFLOW}/diagram.svg",
        workflows.WorkflowDiagramApi.as_view(),
        name="workflow-diagram",
    ),
    path(f"{WORKFLOW}/rules", rules.RuleCollectionApi.as_view(), name="workflow-rules"),
    # Before rules/<rule_id>: "evaluate" here is the ad-hoc evaluation, not a rule id.
    path(
        f"{WORKFLOW}/rules/evaluate",
        rules.ConditionEvaluateApi.as_view(),
        name="workflow-condition-evaluate",
    ),
    path(
        f"{WORKFLOW}/rules/<str:rule_id>",
        rules.RuleDetailApi.as_view(),
        name="workflow-rule-detail",
    ),
    path(
        f"{WORKFLOW}/rules/<str:rule_id>/evaluate",
        rules.RuleEvaluateApi.as_view(),
        name="workflow-rule-evaluate",
    ),
    path(
        f"{WORKFLOW}/resources",
        resources.WorkflowResourceCollectionApi.as_view(),
        name="workflow-resources",
    ),
    path(
        f"{WORKFLOW}/state-agents",
        bindings.StateAgentCollectionApi.as_view(),
        name="workflow-state-agents",
    ),
    path(
        f"{WORKFLOW}/state-agents/<str:binding_id>",
        bindings.StateAgentDetailApi.as_view(),
        name="workflow-state-agent-detail",
    ),
    path(
        f"{WORKFLOW}/activity-agents",
        bindings.ActivityAgentCollectionApi.as_view(),
        name="workflow-activity-agents",
    ),
    path(
        f"{WORKFLOW}/activity-agents/<str:binding_id>",
        bindings.ActivityAgentDetailApi.as_view(),
        name="workflow-activity-agent-detail",
    ),
    path(RESOURCE, resources.ResourceDetailApi.as_view(), name="resource-detail"),
    path(
        f"{RESOURCE}/activities/<str:activity_id>",
        resources.ResourceActivityFireApi.as_view(),
        name="resource-activity-fire",
    ),
    path(
        f"{RESOURCE}/available-activities",
        resources.ResourceAvailableActivitiesApi.as_view(),
        name="resource-available-activities",
    ),
    path(
        f"{RESOURCE}/trigger-agents",
        resources.ResourceTriggerAgentsApi.as_view(),
        name="resource-trigger-agents",
    ),
    path(
        f"{RESOURCE}/executions",
        resources.ResourceExecutionListApi.as_view(),
        name="resource-executions",
    ),
]
