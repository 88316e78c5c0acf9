"""``/workflows/{workflow_id}/rules``: the workflow's rules (latest versions), one rule's
versions, storing a rule (a change is its next version), and evaluating a stored rule or an
ad-hoc condition with the readable explanation. Evaluating stores nothing: it needs only
read access."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.common import MethodPermissions, principal_of
from config.errors import NotFound, ValidationFailed
from tenants.roles import Permission
from workflow_bridge.api.docs import openapi, openapi_body
from workflow_bridge.api.inputs import (
    ConditionEvaluateBody,
    EvaluateBody,
    EvaluationInput,
    RuleBody,
    any_object,
    body_of,
    evaluation_input,
)
from workflow_bridge.api.outputs import (
    RuleEvaluation,
    RuleJson,
    RuleList,
    RuleVersionList,
    result_tree,
    rule_json,
)
from workflow_bridge.models import Workflow
from workflow_bridge.net import RuleError, evaluate, explain, parse_condition
from workflow_bridge.selectors import (
    resource_get,
    rule_latest_list,
    rule_latest_version,
    rule_versions,
    workflow_get,
)
from workflow_bridge.services import rule_save

TAGS = ["workflows"]
EVALUATION = openapi(RuleEvaluation)


class RuleCollectionApi(MethodPermissions, APIView):
    method_permissions = {"GET": Permission.WORKFLOWS_READ, "POST": Permission.WORKFLOWS_WRITE}

    @extend_schema(
        operation_id="workflow_rule_list",
        tags=TAGS,
        responses={200: openapi(RuleList)},
        summary="The workflow's rules, each at its latest version",
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        rules = [rule_json(rule) for rule in rule_latest_list(workflow)]
        return Response({"workflow_id": workflow.id, "rules": rules})

    @extend_schema(
        operation_id="workflow_rule_save",
        tags=TAGS,
        request=openapi_body(RuleBody),
        responses={
            201: OpenApiResponse(openapi(RuleJson), description="Stored as a new version"),
            200: OpenApiResponse(openapi(RuleJson), description="Unchanged: the latest version"),
        },
        summary="Store a rule; a changed rule becomes its next version",
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        body = any_object(request.data)
        rule_id = body.get("id")
        before = rule_latest_version(workflow, rule_id) if isinstance(rule_id, str) else None
        rule = rule_save(workflow=workflow, data=body, actor=principal_of(request).audit_actor)
        if rule.version == before:
            return Response(rule_json(rule))
        return Response(
            rule_json(rule),
            status=201,
            headers={"Location": f"/workflows/{workflow.id}/rules/{rule.rule_id}"},
        )


class RuleDetailApi(APIView):
    required_permission = Permission.WORKFLOWS_READ

    @extend_schema(
        operation_id="workflow_rule_versions",
        tags=TAGS,
        responses={200: openapi(RuleVersionList)},
        summary="Every version of one rule, newest first",
    )
    def get(self, request: Request, workflow_id: str, rule_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        versions = [rule_json(rule) for rule in rule_versions(workflow, rule_id)]
        return Response({"workflow_id": workflow.id, "rule_id": rule_id, "versions": versions})


def _view(workflow: Workflow, given: EvaluationInput) -> tuple[str | None, dict[str, Any]]:
    """(resource id, ``{data, metadata}``) to evaluate against."""
    if given.resource_id is None:
        return None, {"data": given.data, "metadata": given.metadata}
    try:
        resource = resource_get(given.resource_id, workflow=workflow)
    except NotFound:
        raise ValidationFailed(
            f"resource_id: no resource {given.resource_id!r} in this workflow",
            details={"resource_id": ["no such resource in this workflow"]},
        ) from None
    return resource.id, {"data": resource.data, "metadata": resource.metadata}


def _evaluation(
    condition: Any,
    view: dict[str, Any],
    *,
    rule_id: str | None,
    version: int | None,
    resource_id: str | None,
) -> RuleEvaluation:
    try:
        result = evaluate(parse_condition(condition), view)
    except RuleError as exc:  # a condition that does not parse, or a runaway pattern
        raise ValidationFailed(f"condition: {exc}", details={"condition": [str(exc)]}) from None
    return {
        "rule_id": rule_id,
        "version": version,
        "resource_id": resource_id,
        "passed": result.passed,
        "explanation": explain(result),
        "result": result_tree(result),
    }


class RuleEvaluateApi(APIView):
    required_permission = Permission.WORKFLOWS_READ

    @extend_schema(
        operation_id="workflow_rule_evaluate",
        tags=TAGS,
        request=openapi_body(EvaluateBody),
        responses={200: EVALUATION},
        summary="Evaluate a stored rule (its latest version) on data or on a resource",
    )
    def post(self, request: Request, workflow_id: str, rule_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        latest = rule_versions(workflow, rule_id)[0]
        given = evaluation_input(body_of(request.data, EvaluateBody))
        resource_id, view = _view(workflow, given)
        return Response(
            _evaluation(
                latest.condition,
                view,
                rule_id=latest.rule_id,
                version=latest.version,
                resource_id=resource_id,
            )
        )


class ConditionEvaluateApi(APIView):
    required_permission = Permission.WORKFLOWS_READ

    @extend_schema(
        operation_id="workflow_condition_evaluate",
        tags=TAGS,
        request=openapi_body(ConditionEvaluateBody),
        responses={200: EVALUATION},
        summary="Evaluate an ad-hoc condition on data or on a resource (nothing is stored)",
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        body = body_of(request.data, ConditionEvaluateBody)
        resource_id, view = _view(workflow, evaluation_input(body))
        return Response(
            _evaluation(
                body["condition"], view, rule_id=None, version=None, resource_id=resource_id
            )
        )
