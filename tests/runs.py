"""Starting runs from tests the way interfaces do: through the execution core, as a principal
of the tenant. Plus a plain setup helper that stores a queued execution without a job (tests of
the queue and the sweeper decide themselves when and whether a job exists)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django_tenants.utils import schema_context

from agents.core import RunHandle, start_run
from agents.models import Agent, Execution, ExecutionStatus, new_execution_id
from tenants.models import Tenant
from tenants.principals import Principal
from tenants.roles import Role


def principal_for(
    schema: str, *, role: str = Role.USER, kind: str = "api_key", identifier: str = "tests"
) -> Principal:
    with schema_context("public"):
        tenant = Tenant.objects.get(schema_name=schema)
    return Principal(
        kind=kind,  # type: ignore[arg-type]
        identifier=identifier,
        role=role,
        tenant_id=tenant.pk,
        tenant_slug=tenant.slug,
        schema_name=schema,
    )


def body_of(
    *,
    message: str | None = None,
    context: dict[str, Any] | None = None,
    parameters: dict[str, Any] | None = None,
    **config: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if context is not None:
        body["context"] = context
    run_input: dict[str, Any] = {}
    if message is not None:
        run_input["message"] = message
    if parameters is not None:
        run_input["parameters"] = parameters
    if run_input:
        body["input"] = run_input
    if config:
        body["execution_config"] = config
    return body


async def start(
    schema: str,
    agent: Agent | str,
    *,
    mode: str | None = None,
    principal: Principal | None = None,
    idempotency_key: str | None = None,
    **body: Any,
) -> RunHandle:
    return await start_run(
        principal=principal or await sync_to_async(principal_for)(schema),
        agent_ref=agent if isinstance(agent, str) else agent.id,
        body=body_of(**body),
        mode=mode,  # type: ignore[arg-type]
        idempotency_key=idempotency_key,
    )


async def run_async(schema: str, agent: Agent | str, **kwargs: Any) -> Execution:
    """A blocking run to its end (the REST endpoint's path), from async code."""
    handle = await start(schema, agent, **kwargs)
    return await handle.result()


def run(schema: str, agent: Agent | str, **kwargs: Any) -> Execution:
    """A blocking run to its end, from sync code."""
    return async_to_sync(run_async)(schema, agent, **kwargs)


def store_queued(
    schema: str, agent: Agent, *, message: str | None = "go", context: dict[str, Any] | None = None
) -> Execution:
    """A queued execution with no job yet (setup for queue and sweeper tests)."""
    execution_id = new_execution_id()
    with schema_context(schema):
        return Execution.objects.create(
            id=execution_id,
            agent=agent,
            agent_version=agent.version,
            request_input={"message": message, "parameters": {}},
            status=ExecutionStatus.QUEUED,
            requested_model=agent.model,
            principal="api_key:tests",
            context={**(context or {}), "tenant_id": schema, "execution_id": execution_id},
        )
