"""Agents bound to a workflow: ``/workflows/{workflow_id}/state-agents`` (an agent runs when a
resource enters a place) and ``/workflows/{workflow_id}/activity-agents`` (an agent runs as
part of firing an activity). The agent is named by id or slug; responses show its slug.

The services check a binding in full and say why they refuse it (400 naming the field): a
place that can never be marked, an unknown agent, rule or activity, an auto activity that
does not start from the place, a mapping that writes outside ``data.*``/``metadata.*``. PATCH
sends only the fields to change; the binding is checked again as a whole.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.common import MethodPermissions
from config.errors import NotFound, ValidationFailed
from tenants.roles import Permission
from workflow_bridge.api.docs import openapi, openapi_body
from workflow_bridge.api.inputs import (
    ActivityAgentBody,
    StateAgentBody,
    any_object,
    binding_id_of,
)
from workflow_bridge.api.outputs import (
    ActivityAgentJson,
    ActivityAgentList,
    StateAgentJson,
    StateAgentList,
    activity_agent_json,
    state_agent_json,
)
from workflow_bridge.binding_services import (
    activity_agent_save,
    agent_binding_delete,
    state_agent_save,
)
from workflow_bridge.models import ActivityAgent, StateAgent, Workflow
from workflow_bridge.selectors import (
    activity_agent_get,
    activity_agent_list,
    state_agent_get,
    state_agent_list,
    workflow_get,
)

TAGS = ["workflows"]
STATE_AGENT = openapi(StateAgentJson)
ACTIVITY_AGENT = openapi(ActivityAgentJson)
DELETED = {204: OpenApiResponse(description="Unbound; runs already started go on")}


def _changes(data: Any) -> dict[str, Any]:
    changes = any_object(data)
    if not changes:
        raise ValidationFailed("body: nothing to change", details={"body": ["nothing to change"]})
    return changes


def _state_agent(workflow: Workflow, binding_id: str) -> StateAgent:
    number = binding_id_of(binding_id)
    if number is None:
        raise NotFound("State agent binding not found.")
    return state_agent_get(workflow, number)


def _activity_agent(workflow: Workflow, binding_id: str) -> ActivityAgent:
    number = binding_id_of(binding_id)
    if number is None:
        raise NotFound("Activity agent binding not found.")
    return activity_agent_get(workflow, number)


# ---- state agents ----


class StateAgentCollectionApi(MethodPermissions, APIView):
    method_permissions = {"GET": Permission.WORKFLOWS_READ, "POST": Permission.WORKFLOWS_WRITE}

    @extend_schema(
        operation_id="workflow_state_agent_list",
        tags=TAGS,
        responses={200: openapi(StateAgentList)},
        summary="Agents bound to the workflow's places",
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        bindings = [state_agent_json(b) for b in state_agent_list(workflow)]
        return Response({"workflow_id": workflow.id, "state_agents": bindings})

    @extend_schema(
        operation_id="workflow_state_agent_create",
        tags=TAGS,
        request=openapi_body(StateAgentBody),
        responses={201: STATE_AGENT},
        summary="Bind an agent to a place",
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        binding = state_agent_save(workflow=workflow, data=any_object(request.data))
        return Response(
            state_agent_json(state_agent_get(workflow, binding.pk)),
            status=201,
            headers={"Location": f"/workflows/{workflow.id}/state-agents/{binding.pk}"},
        )


class StateAgentDetailApi(MethodPermissions, APIView):
    method_permissions = {
        "GET": Permission.WORKFLOWS_READ,
        "PATCH": Permission.WORKFLOWS_WRITE,
        "DELETE": Permission.WORKFLOWS_WRITE,
    }

    @extend_schema(operation_id="workflow_state_agent_get", tags=TAGS, responses={200: STATE_AGENT})
    def get(self, request: Request, workflow_id: str, binding_id: str) -> Response:
        binding = _state_agent(workflow_get(workflow_id), binding_id)
        return Response(state_agent_json(binding))

    @extend_schema(
        operation_id="workflow_state_agent_update",
        tags=TAGS,
        request=openapi_body(StateAgentBody),
        responses={200: STATE_AGENT},
        summary="Change a state agent binding (only the fields sent)",
    )
    def patch(self, request: Request, workflow_id: str, binding_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        binding = _state_agent(workflow, binding_id)
        changed = state_agent_save(workflow=workflow, data=_changes(request.data), binding=binding)
        return Response(state_agent_json(state_agent_get(workflow, changed.pk)))

    @extend_schema(operation_id="workflow_state_agent_delete", tags=TAGS, responses=DELETED)
    def delete(self, request: Request, workflow_id: str, binding_id: str) -> Response:
        agent_binding_delete(binding=_state_agent(workflow_get(workflow_id), binding_id))
        return Response(status=204)


# ---- activity agents ----


class ActivityAgentCollectionApi(MethodPermissions, APIView):
    method_permissions = {"GET": Permission.WORKFLOWS_READ, "POST": Permission.WORKFLOWS_WRITE}

    @extend_schema(
        operation_id="workflow_activity_agent_list",
        tags=TAGS,
        responses={200: openapi(ActivityAgentList)},
        summary="Agents run as part of the workflow's activities",
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        bindings = [activity_agent_json(b) for b in activity_agent_list(workflow)]
        return Response({"workflow_id": workflow.id, "activity_agents": bindings})

    @extend_schema(
        operation_id="workflow_activity_agent_create",
        tags=TAGS,
        request=openapi_body(ActivityAgentBody),
        responses={201: ACTIVITY_AGENT},
        summary="Run an agent as part of an activity",
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        binding = activity_agent_save(workflow=workflow, data=any_object(request.data))
        return Response(
            activity_agent_json(activity_agent_get(workflow, binding.pk)),
            status=201,
            headers={"Location": f"/workflows/{workflow.id}/activity-agents/{binding.pk}"},
        )


class ActivityAgentDetailApi(MethodPermissions, APIView):
    method_permissions = {
        "GET": Permission.WORKFLOWS_READ,
        "PATCH": Permission.WORKFLOWS_WRITE,
        "DELETE": Permission.WORKFLOWS_WRITE,
    }

    @extend_schema(
        operation_id="workflow_activity_agent_get", tags=TAGS, responses={200: ACTIVITY_AGENT}
    )
    def get(self, request: Request, workflow_id: str, binding_id: str) -> Response:
        binding = _activity_agent(workflow_get(workflow_id), binding_id)
        return Response(activity_agent_json(binding))

    @extend_schema(
        operation_id="workflow_activity_agent_update",
        tags=TAGS,
        request=openapi_body(ActivityAgentBody),
        responses={200: ACTIVITY_AGENT},
        summary="Change an activity agent binding (only the fields sent)",
    )
    def patch(self, request: Request, workflow_id: str, binding_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        binding = _activity_agent(workflow, binding_id)
        changed = activity_agent_save(
            workflow=workflow, data=_changes(request.data), binding=binding
        )
        return Response(activity_agent_json(activity_agent_get(workflow, changed.pk)))

    @extend_schema(operation_id="workflow_activity_agent_delete", tags=TAGS, responses=DELETED)
    def delete(self, request: Request, workflow_id: str, binding_id: str) -> Response:
        agent_binding_delete(binding=_activity_agent(workflow_get(workflow_id), binding_id))
        return Response(status=204)
