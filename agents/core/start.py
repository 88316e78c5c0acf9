"""The one entry point that starts a run, for every interface."""

from __future__ import annotations

import asyncio
from typing import Any

from agents.core.admission import Origin, admit
from agents.core.handle import RunHandle, start_detached
from agents.core.hub import get_hub
from agents.core.idempotency import (
    IdempotencyKey,
    body_fingerprint,
    idempotency_scope,
    parse_idempotency_key,
    record_refusal,
)
from agents.core.limits import shed_load
from agents.core.requests import RunMode, RunRequest, parse_run_request
from agents.core.run import run_claimed
from agents.models import Execution
from config.errors import ValidationFailed
from tenants.access import authorize, authorize_async
from tenants.context import in_schema
from tenants.principals import Principal
from tenants.roles import Permission


async def start_run(
    *,
    principal: Principal,
    agent_ref: str,
    body: Any,
    mode: RunMode | None = None,
    request_id: str = "",
    idempotency_key: str | None = None,
) -> RunHandle:
    """Start a run of ``agent_ref`` for ``principal`` from a caller's canonical body
    (``{context, input, execution_config}``) and return its handle.

    ``mode``: ``"streamed"`` for streaming transports; None lets the body choose between
    blocking and background. The body is validated here (:func:`parse_run_request`), so every
    interface answers a body the same way. ``idempotency_key``: a repeat of the same request
    gets the first one's execution (``handle.replayed``) or its refusal (``ReplayedRefusal``),
    through whichever interface it comes; another request under the key is a 409.
    """
    await authorize_async(principal, Permission.EXECUTIONS_RUN, action="run")
    raw_key = parse_idempotency_key(idempotency_key)
    key = None
    if raw_key is not None:
        fingerprint = body_fingerprint(agent_ref=agent_ref, mode=mode, body=body)
        key = IdempotencyKey(idempotency_scope(principal), raw_key, fingerprint)
    try:
        request = parse_run_request(body, agent_ref=agent_ref, mode=mode)
    except ValidationFailed as refusal:
        if key is not None:
            await in_schema(principal.schema_name, record_refusal, key, refusal)
        raise
    return await run_request(
        principal=principal, request=request, request_id=request_id, key=key, checked=True
    )


def queue_run(*, principal: Principal, request: RunRequest, request_id: str = "") -> Execution:
    """Queue a background run the platform built itself, from sync code, in the caller's
    transaction and schema (the workflow bridge inside its own writes): the execution and its
    job are committed with them, or not at all. Refusals as for :func:`start_run`."""
    if request.mode != "background":
        raise ValueError("queue_run starts background runs only")
    authorize(principal, Permission.EXECUTIONS_RUN, action="run")
    origin = Origin(
        actor=principal.audit_actor,
        request_id=request_id,
        rate_key=principal.api_key_id or principal.audit_actor,
    )
    return admit(principal.schema_name, request, origin).execution


async def run_request(
    *,
    principal: Principal,
    request: RunRequest,
    request_id: str = "",
    key: IdempotencyKey | None = None,
    checked: bool = False,
) -> RunHandle:
    """Start a run the platform built itself (a :class:`RunRequest`: workflows, composition).

    ``request.mode`` decides how: ``blocking`` runs in a task of the caller's (await
    ``handle.result()``; cancelling the caller cancels the run); ``streamed`` runs detached
    from the caller (follow ``handle.events()``; the transport decides whether a departing
    client cancels it); ``background`` is queued for a worker. Refusals (4xx ``DomainError``:
    unknown or disabled agent, input against the agent's schema) come before anything is
    stored.
    """
    if not checked:
        await authorize_async(principal, Permission.EXECUTIONS_RUN, action="run")
    schema_name = principal.schema_name
    shed_load(get_hub().running_count)
    origin = Origin(
        actor=principal.audit_actor,
        request_id=request_id,
        rate_key=principal.api_key_id or principal.audit_actor,
    )
    admitted = await in_schema(schema_name, admit, schema_name, request, origin, key)
    claimed = admitted.claimed
    if claimed is None:
        return RunHandle(
            schema_name,
            admitted.execution,
            mode=request.mode,
            on_disconnect=request.on_disconnect,
            replayed=admitted.replayed,
        )
    name = f"run-{claimed.execution_id}"
    if request.mode == "streamed":
        task = start_detached(run_claimed(claimed), name=name)
    else:
        task = asyncio.create_task(run_claimed(claimed), name=name)
    return RunHandle(
        schema_name,
        admitted.execution,
        mode=request.mode,
        on_disconnect=request.on_disconnect,
        task=task,
    )
