"""``/workflows``: create (the workflow file's content), read, change (the next version each
time), delete (refused while resources exist), versions, analysis and a drawing.

``GET /workflows/{workflow_id}/diagram.svg`` draws the workflow's net with, in each place, the
tokens all its resources hold there together (transitions drawn enabled are enabled in that
sum, not necessarily for one resource). The drawing carries no script or external reference,
every name in it is escaped, and it is served with ``Content-Security-Policy: default-src
'none'`` so that even opened on its own it can run nothing.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.common import MethodPermissions, principal_of, schema_of
from config.errors import DomainError
from tenants.roles import Permission
from workflow_bridge.api.docs import openapi, openapi_body
from workflow_bridge.api.inputs import WorkflowDefinitionBody, any_object
from workflow_bridge.api.outputs import (
    WorkflowAnalysis,
    WorkflowDetail,
    WorkflowList,
    WorkflowVersionList,
    workflow_detail,
    workflow_summary,
    workflow_version_json,
)
from workflow_bridge.files import FileFormat, load_workflow, parse_workflow_file
from workflow_bridge.net import Marking, to_svg
from workflow_bridge.selectors import (
    workflow_get,
    workflow_list,
    workflow_resource_count,
    workflow_token_counts,
    workflow_versions,
)
from workflow_bridge.services import compiled_of, workflow_analysis, workflow_delete, workflow_save

TAGS = ["workflows"]
DEFINITION = openapi_body(WorkflowDefinitionBody)
DETAIL = openapi(WorkflowDetail)


def _detail(workflow_id: str) -> dict[str, Any]:
    workflow = workflow_get(workflow_id)
    return dict(workflow_detail(workflow, workflow_resource_count(workflow)))


class WorkflowCollectionApi(MethodPermissions, APIView):
    method_permissions = {"GET": Permission.WORKFLOWS_READ, "POST": Permission.WORKFLOWS_WRITE}

    @extend_schema(
        operation_id="workflow_list",
        tags=TAGS,
        responses={200: openapi(WorkflowList)},
        summary="List workflows",
    )
    def get(self, request: Request) -> Response:
        workflows = [
            workflow_summary(workflow, workflow.resource_count)  # type: ignore[attr-defined]
            for workflow in workflow_list()
        ]
        return Response({"workflows": workflows})

    @extend_schema(
        operation_id="workflow_create",
        tags=TAGS,
        request=DEFINITION,
        responses={201: DETAIL},
        summary="Create a workflow from its definition (its version 1)",
    )
    def post(self, request: Request) -> Response:
        definition = any_object(request.data)
        workflow = workflow_save(
            definition=definition,
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        return Response(
            _detail(workflow.id), status=201, headers={"Location": f"/workflows/{workflow.id}"}
        )


class WorkflowDetailApi(MethodPermissions, APIView):
    method_permissions = {
        "GET": Permission.WORKFLOWS_READ,
        "PUT": Permission.WORKFLOWS_WRITE,
        "DELETE": Permission.WORKFLOWS_WRITE,
    }

    @extend_schema(
        operation_id="workflow_get",
        tags=TAGS,
        responses={200: DETAIL},
        summary="A workflow (by id or slug) with its current definition",
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        return Response(_detail(workflow_id))

    @extend_schema(
        operation_id="workflow_update",
        tags=TAGS,
        request=DEFINITION,
        responses={200: DETAIL},
        summary="Store a changed definition as the workflow's next version",
        description=(
            "An unchanged definition keeps the current version. Refused (400) when it removes "
            "a place that holds tokens of a resource; 409 when its slug is another workflow's."
        ),
    )
    def put(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        definition = any_object(request.data)
        updated = workflow_save(
            definition=definition,
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
            workflow=workflow,
        )
        return Response(_detail(updated.id))

    @extend_schema(
        operation_id="workflow_delete",
        tags=TAGS,
        responses={
            204: OpenApiResponse(description="Deleted, with its versions, rules and bindings"),
            409: OpenApiResponse(description="The workflow still has resources"),
        },
        summary="Delete a workflow that has no resources",
    )
    def delete(self, request: Request, workflow_id: str) -> Response:
        workflow_delete(
            workflow=workflow_get(workflow_id),
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        return Response(status=204)


class WorkflowVersionListApi(APIView):
    required_permission = Permission.WORKFLOWS_READ

    @extend_schema(
        operation_id="workflow_versions",
        tags=TAGS,
        responses={200: openapi(WorkflowVersionList)},
        summary="Every version of a workflow's definition, newest first",
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        versions = [workflow_version_json(v) for v in workflow_versions(workflow)]
        return Response({"workflow_id": workflow.id, "versions": versions})


class WorkflowAnalysisApi(APIView):
    required_permission = Permission.WORKFLOWS_READ

    @extend_schema(
        operation_id="workflow_analysis",
        tags=TAGS,
        responses={200: openapi(WorkflowAnalysis)},
        summary="Structural analysis of the workflow's net, with explanations",
        description=(
            "Boundedness, deadlocks (and proper ends in final places), transitions that can "
            "never fire and places that can never be marked, from the initial marking."
        ),
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_get(workflow_id)
        return Response(
            {
                "workflow_id": workflow.id,
                "version": workflow.version,
                "analysis": workflow_analysis(workflow),
            }
        )


class WorkflowDiagramApi(APIView):
    required_permission = Permission.WORKFLOWS_READ

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        # Whatever the Accept header (a browser's image/svg+xml included): the drawing is an
        # HttpResponse of its own, and errors (401, 403, 404) are JSON in the platform's shape.
        renderer = JSONRenderer()
        return renderer, renderer.media_type

    @extend_schema(
        operation_id="workflow_diagram",
        tags=TAGS,
        responses={(200, "image/svg+xml"): OpenApiTypes.STR},
        summary="The workflow's net as SVG, with the tokens of all its resources",
    )
    def get(self, request: Request, workflow_id: str) -> HttpResponse:
        workflow = workflow_get(workflow_id)
        net = compiled_of(workflow).net
        counts = workflow_token_counts(workflow)
        marking = Marking({place: n for place, n in counts.items() if net.has_place(place)})
        svg = to_svg(net, marking, title=workflow.name or workflow.slug)
        response = HttpResponse(svg, content_type="image/svg+xml; charset=utf-8")
        response["Content-Security-Policy"] = "default-src 'none'"
        response["Cache-Control"] = "no-store"
        return response


# Media types a workflow file may be sent as; anything else is a 415.
FILE_TYPES: dict[str, FileFormat] = {
    "application/yaml": "yaml",
    "application/x-yaml": "yaml",
    "text/yaml": "yaml",
    "text/x-yaml": "yaml",
    "application/json": "json",
}


class WorkflowImportApi(APIView):
    """``POST /workflows/import``: a workflow file (YAML or JSON, with its agent bindings) as
    the request body, loaded as ``manage.py load_workflow`` does: created, or stored as its next
    version when it changed; nothing stored unless all of it is valid."""

    required_permission = Permission.WORKFLOWS_WRITE
    # The body is the file itself, read as it came (no JSON parsing by DRF first).
    parser_classes: list[Any] = []

    @extend_schema(
        operation_id="workflow_import",
        tags=TAGS,
        request={
            "application/yaml": OpenApiTypes.STR,
            "application/json": OpenApiTypes.OBJECT,
        },
        responses={200: DETAIL, 201: DETAIL},
        summary="Create or update a workflow (and its agent bindings) from a workflow file",
    )
    def post(self, request: Request) -> Response:
        media = (request.content_type or "").split(";")[0].strip().lower()
        fmt = FILE_TYPES.get(media)
        if fmt is None:
            raise UnsupportedFile(
                "Content-Type: send the workflow file as application/yaml or application/json"
            )
        loaded = load_workflow(
            parse_workflow_file(request._request.body, fmt),
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        body = {
            **_detail(loaded.workflow.id),
            "created": loaded.created,
            "state_agents": loaded.state_agents,
            "activity_agents": loaded.activity_agents,
        }
        status = 201 if loaded.created else 200
        return Response(
            body, status=status, headers={"Location": f"/workflows/{loaded.workflow.id}"}
        )


class UnsupportedFile(DomainError):
    status = 415
    code = "unsupported_media_type"
