"""Remote MCP servers of the tenant over REST (operators' ``credentials.manage``): their tools
can be tools of agents (kind ``mcp``). The auth header is write-only: answers say
``has_auth_header``, never the value."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.common import MethodPermissions, principal_of, schema_of
from agents.models import McpServer
from agents.services.mcp_servers import (
    mcp_server_create,
    mcp_server_delete,
    mcp_server_get,
    mcp_server_json,
    mcp_server_update,
)
from tenants.roles import Permission

TAGS = ["mcp-servers"]


def _body(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {"body": data}


class McpServerCollectionApi(MethodPermissions, APIView):
    method_permissions = {
        "GET": Permission.CREDENTIALS_MANAGE,
        "POST": Permission.CREDENTIALS_MANAGE,
    }

    @extend_schema(operation_id="mcp_server_list", tags=TAGS, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        return Response({"mcp_servers": [mcp_server_json(s) for s in McpServer.objects.all()]})

    @extend_schema(
        operation_id="mcp_server_create",
        tags=TAGS,
        request=OpenApiTypes.OBJECT,
        responses={201: OpenApiTypes.OBJECT},
        summary="Register a remote MCP server (name, url, auth_header?, allowed_tools, timeout_seconds)",
    )
    def post(self, request: Request) -> Response:
        server = mcp_server_create(
            data=_body(request.data),
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        return Response(
            mcp_server_json(server), status=201, headers={"Location": f"/mcp-servers/{server.name}"}
        )


class McpServerDetailApi(MethodPermissions, APIView):
    method_permissions = {
        "GET": Permission.CREDENTIALS_MANAGE,
        "PATCH": Permission.CREDENTIALS_MANAGE,
        "DELETE": Permission.CREDENTIALS_MANAGE,
    }

    @extend_schema(operation_id="mcp_server_get", tags=TAGS, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, server_id: str) -> Response:
        return Response(mcp_server_json(mcp_server_get(server_id)))

    @extend_schema(
        operation_id="mcp_server_update",
        tags=TAGS,
        request=OpenApiTypes.OBJECT,
        responses=OpenApiTypes.OBJECT,
        summary="Change a server ('auth_header': '' removes the header)",
    )
    def patch(self, request: Request, server_id: str) -> Response:
        server = mcp_server_update(
            server=mcp_server_get(server_id),
            changes=_body(request.data),
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        return Response(mcp_server_json(server))

    @extend_schema(
        operation_id="mcp_server_delete",
        tags=TAGS,
        responses={204: None},
        summary="Remove a server no agent's tool names (409 otherwise)",
    )
    def delete(self, request: Request, server_id: str) -> Response:
        mcp_server_delete(
            server=mcp_server_get(server_id),
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        return Response(status=204)
