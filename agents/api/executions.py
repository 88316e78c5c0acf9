"""Executions over REST: run (blocking or background), list, read, cancel.

A thin transport over the execution core: the body goes to ``agents.core.start_run`` as it
came (the core validates it, the same way for every interface), and the answer is the
execution as the core stored it.

``POST /agents/{agent_id}/execute`` is a sync view: the run goes through ``async_to_sync`` on
the server's event loop while this request's own thread waits (Django gives every ASGI request
its own thread for sync code, so other requests are not held up). A client that goes away does
not stop a blocking run: it finishes, and an ``Idempotency-Key`` retry reads its result.
Streams live in ``agents.api.sse``.
"""

from __future__ import annotations

import time
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.common import principal_of, schema_of
from agents.api.serializers import (
    ExecutionQuery,
    execution_json,
    execution_response,
    parse_execution_query,
)
from agents.core import REPLAYED_HEADER, cancel_execution, queue_position, start_run
from agents.core.idempotency import HEADER as IDEMPOTENCY_HEADER
from agents.models import TERMINAL_STATUSES, Agent, Execution, ExecutionStatus
from agents.selectors import execution_get, execution_list
from agents.services.agents import agent_get
from config.errors import NotFound
from config.middleware import request_id_for
from tenants.principals import Principal
from tenants.roles import Permission


class ExecutionResponseOutput(serializers.Serializer[dict[str, Any]]):
    """Documentation of the response shape (``execution_response`` builds it)."""

    execution_id = serializers.CharField()
    agent_id = serializers.CharField()
    status = serializers.ChoiceField(choices=ExecutionStatus.values)
    output = serializers.JSONField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    error_code = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    # DRF's serializer metaclass takes declared fields off the class, so this field does not
    # replace Serializer.context at run time; the stubs cannot know that.
    context = serializers.DictField()  # type: ignore[assignment]
    usage = serializers.DictField()
    cost = serializers.CharField()
    model = serializers.CharField(allow_null=True)


IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    str,
    OpenApiParameter.HEADER,
    description="Replays the first request's execution (24 h); 409 for a different body.",
)


def _overhead_ms(started: float, attempts: list[dict[str, Any]]) -> int:
    total = (time.monotonic() - started) * 1000
    upstream = sum(int(a.get("latency_ms") or 0) for a in attempts)
    return max(int(total - upstream), 0)


async def _execute(
    principal: Principal, agent_id: str, body: Any, request_id: str, key: str | None
) -> tuple[Execution, str, bool]:
    """Start the run; for a blocking one, wait for its end. (execution, mode, replayed)"""
    handle = await start_run(
        principal=principal,
        agent_ref=agent_id,
        body=body,
        request_id=request_id,
        idempotency_key=key,
    )
    if handle.mode == "background":
        return handle.execution, handle.mode, handle.replayed
    # A repeat waits for the first request's run, through its event log, for a while.
    wait = settings.IDEMPOTENCY_WAIT_SECONDS if handle.replayed else None
    return await handle.result(wait=wait), handle.mode, handle.replayed


class AgentExecuteApi(APIView):
    required_permission = Permission.EXECUTIONS_RUN

    @extend_schema(
        operation_id="agent_execute",
        request=OpenApiTypes.OBJECT,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            200: OpenApiResponse(ExecutionResponseOutput, description="Blocking run, ended"),
            202: OpenApiResponse(ExecutionResponseOutput, description="Background run, queued"),
        },
        summary="Run an agent: blocking (default) or in the background",
    )
    def post(self, request: Request, agent_id: str) -> Response:
        started = time.monotonic()
        body = request.data  # parsed first: 413 and malformed JSON never reach the core
        execution, mode, replayed = async_to_sync(_execute)(
            principal_of(request),
            agent_id,
            body,
            request_id_for(request._request),
            request.headers.get(IDEMPOTENCY_HEADER),
        )
        headers: dict[str, str] = {}
        if replayed:
            headers[REPLAYED_HEADER] = "true"
        if mode == "background":
            headers["Location"] = f"/agents/{execution.agent_id}/executions/{execution.id}"
            return Response(execution_response(execution), status=202, headers=headers)
        if not replayed:
            headers["X-Platform-Overhead-Ms"] = str(_overhead_ms(started, execution.attempts or []))
        return Response(execution_response(execution), headers=headers)


def _page(query: ExecutionQuery, agent: Agent | None) -> dict[str, Any]:
    queryset = execution_list(
        agent=agent,
        status=query.status or None,
        context_filters=query.context_filters,
        resource_id=query.resource_id,
    )
    total = queryset.count()
    items = list(queryset[query.offset : query.offset + query.limit])
    return query.page_of(total, [execution_json(e) for e in items])


LIST_PARAMETERS = [
    OpenApiParameter("status", str, description="One or more statuses, comma separated"),
    OpenApiParameter("resource_id", str),
    OpenApiParameter("limit", int, description="1..100, default 20"),
    OpenApiParameter("offset", int),
]


class AgentExecutionListApi(APIView):
    required_permission = Permission.EXECUTIONS_READ

    @extend_schema(
        operation_id="agent_execution_list",
        parameters=LIST_PARAMETERS,
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request, agent_id: str) -> Response:
        agent = agent_get(agent_id)
        query = parse_execution_query(request.query_params, allow_agent=False)
        return Response(_page(query, agent))


class ExecutionListApi(APIView):
    """Tenant-wide list. ``agent_id`` naming no agent of this tenant gives an empty page."""

    required_permission = Permission.EXECUTIONS_READ

    @extend_schema(
        operation_id="execution_list",
        parameters=[*LIST_PARAMETERS, OpenApiParameter("agent_id", str)],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        query = parse_execution_query(request.query_params, allow_agent=True)
        agent = None
        if query.agent_ref is not None:
            try:
                agent = agent_get(query.agent_ref)
            except NotFound:
                return Response(query.page_of(0, []))
        return Response(_page(query, agent))


def _detail(execution: Execution, schema: str) -> dict[str, Any]:
    body = execution_json(execution, detail=True)
    if execution.status == ExecutionStatus.QUEUED:
        # 1 = the next job a worker takes; None once its job is no longer waiting.
        body["queue_position"] = queue_position(schema, execution.id)
    return body


class AgentExecutionDetailApi(APIView):
    required_permission = Permission.EXECUTIONS_READ

    @extend_schema(operation_id="agent_execution_get", responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, agent_id: str, execution_id: str) -> Response:
        agent = agent_get(agent_id)
        execution = execution_get(execution_id, agent=agent)
        return Response(_detail(execution, schema_of(request)))


class ExecutionDetailApi(APIView):
    required_permission = Permission.EXECUTIONS_READ

    @extend_schema(operation_id="execution_get", responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, execution_id: str) -> Response:
        return Response(_detail(execution_get(execution_id), schema_of(request)))


class ExecutionCancelApi(APIView):
    """202 while the run is still stopping; 200 once it is terminal (including a queued run,
    which is cancelled on the spot, and a run that had already ended)."""

    required_permission = Permission.EXECUTIONS_CANCEL

    @extend_schema(operation_id="execution_cancel", request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, execution_id: str) -> Response:
        execution = execution_get(execution_id)
        receipt = cancel_execution(
            schema_name=schema_of(request),
            execution=execution,
            actor=principal_of(request).audit_actor,
        )
        terminal = receipt["status"] in TERMINAL_STATUSES
        return Response(receipt, status=200 if terminal else 202)
