"""Resources: create and list them under their workflow; read one (marking, data, history, agent
runs); fire an activity; ask which activities may fire and why; run the state agents of the
places it is in; list the executions the workflow started for it.

Firing (``POST /resources/{resource_id}/activities/{activity_id}``) answers 200 with the
resource once the tokens moved, 202 with the pending firing when the activity has agents to
run first (the firing's status and runs are in ``GET /resources/{resource_id}``), and 409 with
``details.explanation`` when the marking or a rule refuses: nothing moved then.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.common import MethodPermissions, principal_of, schema_of
from agents.api.serializers import execution_json, parse_execution_query
from agents.selectors import execution_list
from config.errors import NotFound, ValidationFailed
from tenants.roles import Permission
from workflow_bridge.api.docs import openapi, openapi_body
from workflow_bridge.api.inputs import (
    FireBody,
    ResourceCreateBody,
    TriggerBody,
    body_of,
    object_field,
    resource_query,
)
from workflow_bridge.api.outputs import (
    AgentsTriggered,
    AvailableActivities,
    FiringJson,
    ResourceDetail,
    ResourcePage,
    firing_json,
    resource_detail,
    resource_json,
)
from workflow_bridge.models import Resource
from workflow_bridge.selectors import (
    execution_statuses,
    firing_execution_ids,
    resource_agent_runs,
    resource_firings,
    resource_get,
    resource_history,
    resource_list,
    workflow_get,
)
from workflow_bridge.services import (
    activity_fire,
    available_activities,
    compiled_of,
    resource_create,
    trigger_agents,
)

TAGS = ["resources"]
DETAIL = openapi(ResourceDetail)


def resource_detail_json(resource: Resource) -> dict[str, Any]:
    runs = resource_agent_runs(resource)
    return dict(
        resource_detail(
            resource,
            history=resource_history(resource),
            runs=runs,
            statuses=execution_statuses([run.execution_id for run in runs]),
            firings=resource_firings(resource),
        )
    )


class WorkflowResourceCollectionApi(MethodPermissions, APIView):
    method_permissions = {"GET": Permission.WORKFLOWS_READ, "POST": Permission.WORKFLOWS_RUN}

    @extend_schema(
        operation_id="workflow_resource_list",
        tags=TAGS,
        parameters=[
            OpenApiParameter("place", str, description="Resources holding tokens in this place"),
            OpenApiParameter("state", str, description="One-token resources in this place"),
            OpenApiParameter("limit", int, description="1..100, default 20"),
            OpenApiParameter("offset", int),
            OpenApiParameter("page", int, description="From 1 (instead of offset)"),
        ],
        responses={200: openapi(ResourcePage)},
        summary="The workflow's resources, newest first",
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        query = resource_query(request.query_params)
        net = compiled_of(workflow).net
        for name, place in (("place", query.place), ("state", query.state)):
            if place is not None and not net.has_place(place):
                raise ValidationFailed(
                    f"{name}: {place!r} is not a place of this workflow",
                    details={name: ["not a place of this workflow"]},
                )
        queryset = resource_list(workflow=workflow, place=query.place, state=query.state)
        total = queryset.count()
        items = list(queryset[query.offset : query.offset + query.limit])
        page: ResourcePage = {
            "resources": [resource_json(resource) for resource in items],
            "total": total,
            "page": query.page(),
            "page_size": query.limit,
            "limit": query.limit,
            "offset": query.offset,
        }
        return Response(page)

    @extend_schema(
        operation_id="workflow_resource_create",
        tags=TAGS,
        request=openapi_body(ResourceCreateBody),
        responses={201: DETAIL},
        summary="Create a resource in the workflow's initial marking",
        description="The state agents of its initial places are queued (they run in a worker).",
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        body = body_of(request.data, ResourceCreateBody)
        resource = resource_create(
            workflow=workflow,
            data=object_field(body, "data"),
            metadata=object_field(body, "metadata"),
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        return Response(
            resource_detail_json(resource_get(resource.id)),
            status=201,
            headers={"Location": f"/resources/{resource.id}"},
        )


class ResourceDetailApi(APIView):
    required_permission = Permission.WORKFLOWS_READ

    @extend_schema(
        operation_id="resource_get",
        tags=TAGS,
        responses={200: DETAIL},
        summary="A resource: marking, data, history, agent runs and firings",
    )
    def get(self, request: Request, resource_id: str) -> Response:
        return Response(resource_detail_json(resource_get(resource_id)))


class ResourceActivityFireApi(APIView):
    required_permission = Permission.WORKFLOWS_RUN

    @extend_schema(
        operation_id="resource_activity_fire",
        tags=TAGS,
        request=openapi_body(FireBody),
        responses={
            200: OpenApiResponse(DETAIL, description="Fired: the resource after the step"),
            202: OpenApiResponse(
                openapi(FiringJson), description="Waiting for the activity's agents"
            ),
            409: OpenApiResponse(
                description="The marking or a rule refuses; details.explanation says why"
            ),
        },
        summary="Fire an activity on a resource",
    )
    def post(self, request: Request, resource_id: str, activity_id: str) -> Response:
        resource = resource_get(resource_id)
        body = body_of(request.data, FireBody)
        data = object_field(body, "data")
        if activity_id not in compiled_of(resource.workflow).activities:
            raise NotFound(f"Activity {activity_id!r} not found in this workflow.")
        fired = activity_fire(
            resource=resource,
            activity_id=activity_id,
            data=data,
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        if fired.firing is not None:
            return Response(
                firing_json(fired.firing, firing_execution_ids(fired.firing)),
                status=202,
                headers={"Location": f"/resources/{resource.id}"},
            )
        return Response(resource_detail_json(resource_get(resource.id)))


class ResourceAvailableActivitiesApi(APIView):
    required_permission = Permission.WORKFLOWS_READ

    @extend_schema(
        operation_id="resource_available_activities",
        tags=TAGS,
        responses={200: openapi(AvailableActivities)},
        summary="Every activity of the workflow: may it fire now, and why (not)",
    )
    def get(self, request: Request, resource_id: str) -> Response:
        resource = resource_get(resource_id)
        return Response(
            {
                "resource_id": resource.id,
                "version": resource.version,
                "marking": dict(resource.marking),
                "state": resource.state,
                "activities": available_activities(resource),
            }
        )


class ResourceTriggerAgentsApi(APIView):
    required_permission = Permission.WORKFLOWS_RUN

    @extend_schema(
        operation_id="resource_trigger_agents",
        tags=TAGS,
        request=openapi_body(TriggerBody),
        responses={202: openapi(AgentsTriggered)},
        summary="Run the state agents of the places the resource is in now",
    )
    def post(self, request: Request, resource_id: str) -> Response:
        resource = resource_get(resource_id)
        body_of(request.data, TriggerBody)
        queued = trigger_agents(
            resource=resource,
            schema_name=schema_of(request),
            actor=principal_of(request).audit_actor,
        )
        triggered: AgentsTriggered = {"resource_id": resource.id, "queued": queued}
        return Response(triggered, status=202)


class ResourceExecutionListApi(APIView):
    required_permission = Permission.WORKFLOWS_READ

    @extend_schema(
        operation_id="resource_execution_list",
        tags=TAGS,
        parameters=[
            OpenApiParameter("status", str, description="One or more statuses, comma separated"),
            OpenApiParameter("limit", int, description="1..100, default 20"),
            OpenApiParameter("offset", int),
        ],
        responses={200: OpenApiTypes.OBJECT},
        summary="The executions the workflow started for this resource (as GET /executions)",
    )
    def get(self, request: Request, resource_id: str) -> Response:
        resource = resource_get(resource_id)
        if "resource_id" in request.query_params:
            raise ValidationFailed(
                "resource_id: given by the path", details={"resource_id": ["given by the path"]}
            )
        query = parse_execution_query(request.query_params, allow_agent=False)
        queryset = execution_list(
            status=query.status or None,
            context_filters=query.context_filters,
            resource_id=resource.id,
        )
        total = queryset.count()
        items = list(queryset[query.offset : query.offset + query.limit])
        return Response(query.page_of(total, [execution_json(e) for e in items]))
