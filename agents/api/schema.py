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


class ApiSchemaGenerator(SchemaGenerator):
    def get_schema(self, request: Any = None, public: bool = False) -> dict[str, Any]:
        # Untyped in drf-spectacular; pyproject's untyped_calls_exclude does not reach a call
        # through super().
        schema: dict[str, Any] = super().get_schema(request=request, public=public)  # type: ignore[no-untyped-call]
        schema.setdefault("paths", {}).update(SSE_PATHS)
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
