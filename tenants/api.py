"""REST endpoints for identity and credentials: one thin view per operation."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import ValidationFailed
from tenants.audit.models import AuditLog
from tenants.audit.selectors import (
    DEFAULT_PAGE,
    EXPORT_FIELDS,
    MAX_PAGE,
    BadAuditQuery,
    audit_page,
    audit_query_from_params,
)
from tenants.middleware import request_tenant
from tenants.principals import Principal
from tenants.roles import Permission, Role
from tenants.selectors import api_key_get_for_tenant, api_key_list
from tenants.services import api_key_create, api_key_revoke, token_issue


def _principal(request: Request) -> Principal:
    assert isinstance(request.user, Principal)  # guaranteed by HasRolePermission
    return request.user


# Any: it is also given a queryset with many=True, which the stubs cannot say.
class ApiKeyOutput(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    role = serializers.CharField()
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField()
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)


class ApiKeyCreated(ApiKeyOutput):
    key = serializers.CharField(help_text="The secret: shown in this answer only")


class WhoAmIApi(APIView):
    required_permission = Permission.IDENTITY_READ

    @extend_schema(
        operation_id="whoami",
        responses={
            200: inline_serializer(
                "WhoAmI",
                fields={
                    "tenant": serializers.CharField(),
                    "role": serializers.CharField(),
                    "principal": serializers.CharField(),
                    "permissions": serializers.ListField(child=serializers.CharField()),
                },
            )
        },
    )
    def get(self, request: Request) -> Response:
        principal = _principal(request)
        return Response(
            {
                "tenant": principal.tenant_slug,
                "role": principal.role,
                "principal": principal.audit_actor,
                "permissions": sorted(str(p) for p in Permission if principal.can(p)),
            }
        )


class TokenIssueApi(APIView):
    """``POST /auth/token``: an API key in, a short-lived tenant JWT out."""

    required_permission = Permission.TOKENS_ISSUE

    class InputSerializer(serializers.Serializer[None]):
        role = serializers.ChoiceField(choices=Role.values, required=False)
        ttl_seconds = serializers.IntegerField(required=False, min_value=1)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            # A field the token cannot carry (tenant, sub, ...) is a mistake or a forgery:
            # say so instead of issuing a token that silently lacks it.
            unknown = set(self.initial_data) - set(self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {name: "Unknown field." for name in sorted(unknown)}
                )
            return attrs

    @extend_schema(
        operation_id="token_issue",
        request=InputSerializer,
        responses={
            201: inline_serializer(
                "IssuedToken",
                fields={
                    "access_token": serializers.CharField(),
                    "token_type": serializers.CharField(),
                    "expires_in": serializers.IntegerField(),
                    "tenant": serializers.CharField(),
                    "role": serializers.CharField(),
                },
            )
        },
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, claims = token_issue(
            principal=_principal(request),
            role=data.validated_data.get("role"),
            ttl_seconds=data.validated_data.get("ttl_seconds"),
            request=request._request,
        )
        return Response(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": claims["exp"] - claims["iat"],
                "tenant": claims["tenant"],
                "role": claims["role"],
            },
            status=201,
        )


class ApiKeyListCreateApi(APIView):
    required_permission = Permission.KEYS_MANAGE

    class InputSerializer(serializers.Serializer[None]):
        name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
        role = serializers.ChoiceField(choices=Role.values)
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            unknown = set(self.initial_data) - set(self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {name: "Unknown field." for name in sorted(unknown)}
                )
            return attrs

    @extend_schema(
        operation_id="api_key_list",
        responses={
            200: inline_serializer("ApiKeyList", fields={"api_keys": ApiKeyOutput(many=True)})
        },
    )
    def get(self, request: Request) -> Response:
        keys = api_key_list(tenant=request_tenant(request._request))
        return Response({"api_keys": ApiKeyOutput(keys, many=True).data})

    @extend_schema(
        operation_id="api_key_create", request=InputSerializer, responses={201: ApiKeyCreated}
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = api_key_create(
            tenant=request_tenant(request._request),
            actor=_principal(request).audit_actor,
            request=request._request,
            **data.validated_data,
        )
        body = dict(ApiKeyOutput(created.api_key).data)
        body["key"] = created.key  # the only time the key is ever shown
        return Response(body, status=201)


class ApiKeyDetailApi(APIView):
    required_permission = Permission.KEYS_MANAGE

    @extend_schema(operation_id="api_key_get", responses={200: ApiKeyOutput})
    def get(self, request: Request, key_id: str) -> Response:
        api_key = api_key_get_for_tenant(tenant=request_tenant(request._request), key_id=key_id)
        return Response(ApiKeyOutput(api_key).data)

    @extend_schema(
        operation_id="api_key_revoke",
        responses={200: ApiKeyOutput},
        description="Revokes the key (it stays listed, with revoked_at) and answers it.",
    )
    def delete(self, request: Request, key_id: str) -> Response:
        api_key = api_key_get_for_tenant(tenant=request_tenant(request._request), key_id=key_id)
        api_key_revoke(
            api_key=api_key, actor=_principal(request).audit_actor, request=request._request
        )
        return Response(ApiKeyOutput(api_key).data)


class AuditEntryOutput(serializers.ModelSerializer[AuditLog]):
    class Meta:
        model = AuditLog
        # What an export line holds: everything the hash covers, the hashes, the id.
        fields = list(EXPORT_FIELDS)


AUDIT_LOG_PARAMETERS = [
    OpenApiParameter("actor", str, description='Exact actor, e.g. "api_key:cba_ab12"'),
    OpenApiParameter(
        "action", str, description='Exact action, or a prefix ending in ".*" ("execution.*")'
    ),
    OpenApiParameter("target_type", str, description='e.g. "execution", "api_key"'),
    OpenApiParameter("target_id", str, description="Only with target_type"),
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="ISO 8601, inclusive"),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="ISO 8601, exclusive"),
    OpenApiParameter("cursor", str, description="The next_cursor of the previous page"),
    OpenApiParameter("limit", int, description=f"1..{MAX_PAGE}, default {DEFAULT_PAGE}"),
]


class AuditLogListApi(APIView):
    """``GET /audit-log``: the tenant's audit log, newest first, a page at a time."""

    required_permission = Permission.AUDIT_READ

    @extend_schema(
        operation_id="audit_log_list",
        parameters=AUDIT_LOG_PARAMETERS,
        responses={
            200: inline_serializer(
                "AuditLogPage",
                fields={
                    "entries": AuditEntryOutput(many=True),
                    "next_cursor": serializers.CharField(allow_null=True),
                    "next": serializers.URLField(allow_null=True),
                },
            )
        },
    )
    def get(self, request: Request) -> Response:
        try:
            query = audit_query_from_params(request.query_params.dict())
        except BadAuditQuery as exc:
            raise ValidationFailed(str(exc), details={exc.parameter: [str(exc)]}) from None
        # The connection's schema was set by the tenant middleware for this request.
        entries, next_cursor = audit_page(query)
        next_url = None
        if next_cursor is not None:
            params = request.query_params.copy()
            params["cursor"] = next_cursor
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
        return Response(
            {
                "entries": AuditEntryOutput(entries, many=True).data,
                "next_cursor": next_cursor,
                "next": next_url,
            }
        )
