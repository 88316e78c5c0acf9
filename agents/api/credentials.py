"""Provider credentials of the tenant over REST (operators' ``credentials.manage``).

Secrets are write-only: answers say ``has_api_key`` and list ``extra_header_names``, never a
value. ``POST /credentials/{id}/test`` makes one small real call with the credential and
answers 200 whatever the upstream said (``ok: false`` with the error): a failing provider is
not this server's failure."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.common import MethodPermissions, principal_of, schema_of
from agents.models import ProviderCredential
from agents.services.credentials import (
    credential_create,
    credential_delete,
    credential_get,
    credential_json,
    credential_test,
    credential_update,
)
from tenants.roles import Permission

TAGS = ["credentials"]


def _body(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {"body": data}


class CredentialCollectionApi(MethodPermissions, APIView):
    method_permissions = {
        "GET": Permission.CREDENTIALS_MANAGE,
        "POST": Permission.CREDENTIALS_MANAGE,
    }

    @extend_schema(operation_id="credential_list", tags=TAGS, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        return Response(
            {"credentials": [credential_json(c) for c in ProviderCredential.objects.all()]}
        )

    @extend_schema(
        operation_id="credential_create",
        tags=TAGS,
        request=OpenApiTypes.OBJECT,
        responses={201: OpenApiTypes.OBJECT},
        summary="Add a provider credential (name, kind, base_url?, api_key?, extra_headers?)",
    )
    def post(self, request: Request) -> Response:
        credential = credential_create(
            data=_body(request.data),
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        return Response(
            credential_json(credential),
            status=201,
            headers={"Location": f"/credentials/{credential.id}"},
        )


class CredentialDetailApi(MethodPermissions, APIView):
    method_permissions = {
        "GET": Permission.CREDENTIALS_MANAGE,
        "PATCH": Permission.CREDENTIALS_MANAGE,
        "DELETE": Permission.CREDENTIALS_MANAGE,
    }

    @extend_schema(operation_id="credential_get", tags=TAGS, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, credential_id: str) -> Response:
        return Response(credential_json(credential_get(credential_id)))

    @extend_schema(
        operation_id="credential_update",
        tags=TAGS,
        request=OpenApiTypes.OBJECT,
        responses=OpenApiTypes.OBJECT,
        summary="Change a credential (no api_key keeps the stored one; '' removes it)",
    )
    def patch(self, request: Request, credential_id: str) -> Response:
        credential = credential_update(
            credential=credential_get(credential_id),
            changes=_body(request.data),
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        return Response(credential_json(credential))

    @extend_schema(
        operation_id="credential_delete",
        tags=TAGS,
        responses={204: None},
        summary="Remove a credential no agent or model price uses (409 naming them otherwise)",
    )
    def delete(self, request: Request, credential_id: str) -> Response:
        credential_delete(
            credential=credential_get(credential_id),
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        return Response(status=204)


class CredentialTestApi(MethodPermissions, APIView):
    method_permissions = {"POST": Permission.CREDENTIALS_MANAGE}

    @extend_schema(
        operation_id="credential_test",
        tags=TAGS,
        request=OpenApiTypes.OBJECT,
        responses=OpenApiTypes.OBJECT,
        summary=(
            "Test the connection: one small real call (model?); 200 with {ok, latency_ms, "
            "model, error?}"
        ),
    )
    def post(self, request: Request, credential_id: str) -> Response:
        result = credential_test(
            credential=credential_get(credential_id),
            data=_body(request.data),
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        return Response(result)
