"""The tenant's price table over REST: readable by every role that may read agents, changed
by operators (``credentials.manage``). Prices are decimal strings (per million tokens)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.common import MethodPermissions, principal_of, schema_of
from agents.services.model_prices import (
    model_price_create,
    model_price_delete,
    model_price_get,
    model_price_json,
    model_price_list,
    model_price_update,
)
from tenants.roles import Permission

TAGS = ["model-prices"]


def _body(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {"body": data}


class ModelPriceCollectionApi(MethodPermissions, APIView):
    method_permissions = {
        "GET": Permission.AGENTS_READ,
        "POST": Permission.CREDENTIALS_MANAGE,
    }

    @extend_schema(operation_id="model_price_list", tags=TAGS, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        return Response({"model_prices": [model_price_json(p) for p in model_price_list()]})

    @extend_schema(
        operation_id="model_price_create",
        tags=TAGS,
        request=OpenApiTypes.OBJECT,
        responses={201: OpenApiTypes.OBJECT},
        summary=(
            "Price a model (model, credential?, input_per_million?, output_per_million?, "
            "capabilities?, enabled?)"
        ),
    )
    def post(self, request: Request) -> Response:
        row = model_price_create(
            data=_body(request.data),
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        return Response(
            model_price_json(row), status=201, headers={"Location": f"/model-prices/{row.pk}"}
        )


class ModelPriceDetailApi(MethodPermissions, APIView):
    method_permissions = {
        "GET": Permission.AGENTS_READ,
        "PATCH": Permission.CREDENTIALS_MANAGE,
        "DELETE": Permission.CREDENTIALS_MANAGE,
    }

    @extend_schema(operation_id="model_price_get", tags=TAGS, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, price_id: str) -> Response:
        return Response(model_price_json(model_price_get(price_id)))

    @extend_schema(
        operation_id="model_price_update",
        tags=TAGS,
        request=OpenApiTypes.OBJECT,
        responses=OpenApiTypes.OBJECT,
        summary="Change a price row (fields left out keep their values)",
    )
    def patch(self, request: Request, price_id: str) -> Response:
        row = model_price_update(
            row=model_price_get(price_id),
            changes=_body(request.data),
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        return Response(model_price_json(row))

    @extend_schema(
        operation_id="model_price_delete",
        tags=TAGS,
        responses={204: None},
        summary="Remove a price row",
    )
    def delete(self, request: Request, price_id: str) -> Response:
        model_price_delete(
            row=model_price_get(price_id),
            actor=principal_of(request).audit_actor,
            schema_name=schema_of(request),
        )
        return Response(status=204)
