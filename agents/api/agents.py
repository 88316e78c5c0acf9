"""``/agents``: create, read, change (a new version each time), disable or delete agents.

``DELETE /agents/{agent_id}``: an agent that has executions is kept (the executions reference
its versions, and the database protects them) and *disabled* instead: 200 with the agent,
``enabled: false``. An agent that never ran is removed: 204.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.common import MethodPermissions, principal_of, schema_of
from agents.api.serializers import agent_json
from agents.models import Agent, AgentVersion, ProviderCredential
from agents.selectors import agent_stats, model_catalog
from agents.services.agents import (
    WRITABLE_FIELDS,
    agent_create,
    agent_delete,
    agent_get,
    agent_update,
)
from agents.services.tool_secrets import mask_config_secrets
from config.errors import ValidationFailed
from tenants.roles import Permission

# Set by the platform, never by a body (mass assignment).
READ_ONLY_FIELDS = frozenset({"id", "tenant", "version", "created_at", "updated_at"})


class AgentOutput(serializers.Serializer[dict[str, Any]]):
    """Documentation of the agent shape (``agent_json`` builds it)."""

    id = serializers.CharField()
    slug = serializers.CharField()
    name = serializers.CharField()
    credential = serializers.CharField(help_text="The provider credential's name")
    model = serializers.CharField()
    enabled = serializers.BooleanField()
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def _agent_body(data: Any, *, partial: bool) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed("body: must be a JSON object")
    fixed = sorted(set(data) & READ_ONLY_FIELDS)
    if fixed:
        raise ValidationFailed(
            f"{fixed[0]}: set by the platform, not writable",
            details={name: ["not writable"] for name in fixed},
        )
    unknown = sorted(set(data) - WRITABLE_FIELDS)
    if unknown:
        raise ValidationFailed(
            f"{unknown[0]}: unknown field", details={name: ["unknown field"] for name in unknown}
        )
    if partial and not data:
        raise ValidationFailed("body: nothing to change")
    if "credential" in data and not isinstance(data["credential"], str):
        raise ValidationFailed("credential: must be a credential name")
    return dict(data)


class AgentCollectionApi(MethodPermissions, APIView):
    method_permissions = {"GET": Permission.AGENTS_READ, "POST": Permission.AGENTS_WRITE}

    @extend_schema(
        operation_id="agent_list",
        responses={200: inline_serializer("AgentList", fields={"agents": AgentOutput(many=True)})},
        summary="List agents",
    )
    def get(self, request: Request) -> Response:
        agents = Agent.objects.select_related("credential").order_by("slug")
        return Response({"agents": [agent_json(agent) for agent in agents]})

    @extend_schema(
        operation_id="agent_create",
        request=AgentOutput,
        responses={201: AgentOutput},
        summary="Create an agent (its version 1)",
    )
    def post(self, request: Request) -> Response:
        data = _agent_body(request.data, partial=False)
        agent = agent_create(
            data=data, actor=principal_of(request).audit_actor, schema_name=schema_of(request)
        )
        agent = agent_get(agent.id)  # with its credential
        return Response(agent_json(agent), status=201, headers={"Location": f"/agents/{agent.id}"})


class AgentDetailApi(MethodPermissions, APIView):
    method_permissions = {
        "GET": Permission.AGENTS_READ,
        "PATCH": Permission.AGENTS_WRITE,
        "DELETE": Permission.AGENTS_WRITE,
    }

    @extend_schema(operation_id="agent_get", responses={200: AgentOutput})
    def get(self, request: Request, agent_id: str) -> Response:
        return Response(agent_json(agent_get(agent_id)))

    @extend_schema(
        operation_id="agent_update",
        request=AgentOutput,
        responses={200: AgentOutput},
        summary="Change an agent (stored as its next version)",
    )
    def patch(self, request: Request, agent_id: str) -> Response:
        agent = agent_get(agent_id)
        changes = _agent_body(request.data, partial=True)
        updated = agent_update(
            agent=agent,
            changes=changes,
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        return Response(agent_json(agent_get(updated.id)))

    @extend_schema(
        operation_id="agent_delete",
        responses={
            200: OpenApiResponse(AgentOutput, description="Had executions: disabled instead"),
            204: OpenApiResponse(description="Never ran: removed"),
        },
    )
    def delete(self, request: Request, agent_id: str) -> Response:
        agent = agent_get(agent_id)
        disabled = agent_delete(
            agent=agent, actor=principal_of(request).audit_actor, schema_name=schema_of(request)
        )
        if disabled is None:
            return Response(status=204)
        return Response(agent_json(disabled))


class AgentVersionListApi(APIView):
    required_permission = Permission.AGENTS_READ

    @extend_schema(operation_id="agent_versions", responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, agent_id: str) -> Response:
        agent = agent_get(agent_id)
        versions = list(AgentVersion.objects.filter(agent=agent).order_by("-version"))
        ids = {str(v.config.get("credential")) for v in versions if v.config.get("credential")}
        names = {
            str(pk): name
            for pk, name in ProviderCredential.objects.filter(pk__in=ids).values_list("pk", "name")
        }
        return Response(
            {
                "agent_id": agent.id,
                "versions": [
                    {
                        "version": v.version,
                        "config": {
                            **mask_config_secrets(v.config),
                            "credential": names.get(str(v.config.get("credential")), None),
                        },
                        "created_at": v.created_at.isoformat(),
                        "created_by": v.created_by,
                    }
                    for v in versions
                ],
            }
        )


class AgentStatsApi(APIView):
    required_permission = Permission.AGENTS_READ

    @extend_schema(operation_id="agent_stats", responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, agent_id: str) -> Response:
        agent = agent_get(agent_id)
        return Response({"agent_id": agent.id, **agent_stats(agent)})


class ModelListApi(APIView):
    """``GET /models``: what the tenant may call (the models of its credentials, the virtual
    models, prices); read-only for every role that may read agents."""

    required_permission = Permission.AGENTS_READ

    @extend_schema(
        operation_id="model_list",
        responses=OpenApiTypes.OBJECT,
        summary="The models the tenant may call, virtual models and prices",
    )
    def get(self, request: Request) -> Response:
        return Response(model_catalog())
