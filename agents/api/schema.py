"""OpenAPI document and Swagger UI, open to anyone (no credential, public host included).

Generating the document reads URL patterns and serializers only: no query, no tenant data.
The Swagger UI's files come from ``drf-spectacular-sidecar`` on this server, never a CDN.
The SSE endpoints are plain async Django views (DRF has no async views), so the generator
adds them by hand.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

TENANT_URLCONF = "config.urls_tenant"


class BearerAuthentication(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.PrincipalAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (cba_…) or a tenant JWT from POST /auth/token",
        }


def _sse(summary: str, parameters: list[dict[str, Any]], *, post: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "tags": ["agents"],
        "security": [{"bearerAuth": []}],
        "parameters": [
            {"name": "agent_id", "in": "path", "required": True, "schema": {"type": "string"}},
            *parameters,
        ],
        "responses": {
            "200": {
                "description": (
                    "text/event-stream: `id: <seq>`, `event: <type>` (execution.started, "
                    "thinking, chunk, tool_call, tool_result, usage, complete, error, "
                    "cancelled), `data:`; ends with `data: [DONE]`; `: keep-alive` comments."
                ),
                "headers": {"Location": {"schema": {"type": "string"}}},
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        },
    }
    if post:
        operation["requestBody"] = {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Execute"}}}
        }
    return operation


SSE_PATHS: dict[str, dict[str, Any]] = {
    "/agents/{agent_id}/execute/stream": {
        "post": {
            **_sse(
                "Run an agent and stream its events (SSE)",
                [
                    {
                        "name": "on_disconnect",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["cancel", "continue"]},
                    },
                    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
                ],
                post=True,
            ),
            "operationId": "agent_execute_stream",
        }
    },
    "/agents/{agent_id}/executions/{execution_id}/stream": {
        "get": {
            **_sse(
                "Attach to an execution's event stream; resume after a cursor",
                [
                    {
                        "name": "execution_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {"name": "after", "in": "query", "schema": {"type": "integer"}},
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "integer"}},
                ],
                post=False,
            ),
            "operationId": "agent_execution_stream",
        }
    },
}


# Every error answer has one shape (config/errors.py), whichever operation produced it.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "request_id"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        },
        "request_id": {"type": "string"},
    },
}
# The statuses the shared authentication, permission, validation, limits and error handlers
# can give any operation; writes may also conflict, bodies may be too large.
COMMON_ERRORS = {
    "400": "Invalid input: the message names the field",
    "401": "No valid credential",
    "403": "The credential's role or the tenant's state does not allow this",
    "404": "No such object in the caller's tenant",
    "429": "A plan limit or rate limit was reached (Retry-After)",
    "503": "Overloaded or the database is unavailable (Retry-After)",
}
WRITE_ERRORS = {"409": "Conflicts with the stored state or an Idempotency-Key in use"}
BODY_ERRORS = {
    "413": "Request body too large",
    "415": "Content-Type not accepted (or no body where one is needed)",
}
WRITE_METHODS = {"post", "put", "patch", "delete"}


def _document_errors(schema: dict[str, Any]) -> None:
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            statuses = dict(COMMON_ERRORS)
            if method in WRITE_METHODS:
                statuses.update(WRITE_ERRORS)
            if "requestBody" in operation:
                statuses.update(BODY_ERRORS)
            responses = operation.setdefault("responses", {})
            for status, description in statuses.items():
                responses.setdefault(status, {"description": description, "content": error})
            # An error a view documented by its description alone has the same body.
            for status, response in responses.items():
                if status[0] in "45" and "content" not in response:
                    response["content"] = error


class ApiSchemaGenerator(SchemaGenerator):
    def get_schema(self, request: Any = None, public: bool = False) -> dict[str, Any]:
        # Untyped in drf-spectacular; pyproject's untyped_calls_exclude does not reach a call
        # through super().
        schema: dict[str, Any] = super().get_schema(request=request, public=public)  # type: ignore[no-untyped-call]
        schema.setdefault("paths", {}).update(SSE_PATHS)
        _document_errors(schema)
        return schema


class ApiSchemaView(SpectacularAPIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    generator_class = ApiSchemaGenerator
    # Always the tenant API, also when served from the public host.
    urlconf = TENANT_URLCONF


class ApiDocsView(SpectacularSwaggerView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    url_name = "api-schema"
