"""Agent and execution endpoints (tenant URLconf): exact paths, no trailing slash."""

from __future__ import annotations

from django.urls import path

from agents.api import agents, executions, mcp_servers, plan, sse
from agents.api.credentials import CredentialCollectionApi, CredentialDetailApi, CredentialTestApi
from agents.api.model_prices import ModelPriceCollectionApi, ModelPriceDetailApi
from agents.api.usage import UsageReportApi

urlpatterns = [
    path("mcp-servers", mcp_servers.McpServerCollectionApi.as_view(), name="mcp-servers"),
    path(
        "mcp-servers/<str:server_id>",
        mcp_servers.McpServerDetailApi.as_view(),
        name="mcp-server-detail",
    ),
    path("credentials", CredentialCollectionApi.as_view(), name="credentials"),
    path(
        "credentials/<str:credential_id>",
        CredentialDetailApi.as_view(),
        name="credential-detail",
    ),
    path(
        "credentials/<str:credential_id>/test",
        CredentialTestApi.as_view(),
        name="credential-test",
    ),
    path("model-prices", ModelPriceCollectionApi.as_view(), name="model-prices"),
    path(
        "model-prices/<str:price_id>",
        ModelPriceDetailApi.as_view(),
        name="model-price-detail",
    ),
    path("agents", agents.AgentCollectionApi.as_view(), name="agents"),
    path("models", agents.ModelListApi.as_view(), name="models"),
    path("usage", UsageReportApi.as_view(), name="usage"),
    path("plan", plan.PlanApi.as_view(), name="plan"),
    path("agents/<str:agent_id>", agents.AgentDetailApi.as_view(), name="agent-detail"),
    path(
        "agents/<str:agent_id>/versions",
        agents.AgentVersionListApi.as_view(),
        name="agent-versions",
    ),
    path("agents/<str:agent_id>/stats", agents.AgentStatsApi.as_view(), name="agent-stats"),
    path(
        "agents/<str:agent_id>/execute",
        executions.AgentExecuteApi.as_view(),
        name="agent-execute",
    ),
    path(
        "agents/<str:agent_id>/execute/stream",
        sse.agent_execute_stream,
        name="agent-execute-stream",
    ),
    path(
        "agents/<str:agent_id>/executions",
        executions.AgentExecutionListApi.as_view(),
        name="agent-executions",
    ),
    path(
        "agents/<str:agent_id>/executions/<str:execution_id>",
        executions.AgentExecutionDetailApi.as_view(),
        name="agent-execution-detail",
    ),
    path(
        "agents/<str:agent_id>/executions/<str:execution_id>/stream",
        sse.execution_stream_attach,
        name="agent-execution-stream",
    ),
    path("executions", executions.ExecutionListApi.as_view(), name="executions"),
    path(
        "executions/<str:execution_id>",
        executions.ExecutionDetailApi.as_view(),
        name="execution-detail",
    ),
    path(
        "executions/<str:execution_id>/cancel",
        executions.ExecutionCancelApi.as_view(),
        name="execution-cancel",
    ),
]
