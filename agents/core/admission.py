"""Admitting a run: the checks that need the database, and the stored execution.

One sync function, run in the tenant's schema, does everything before a run may start: the
``Idempotency-Key`` (a repeat gets what its key already produced), the agent (exists, enabled),
the input against the agent's input schema, then the ``Execution`` row: ``running`` for a run
that starts at once in this process (blocking, streamed), ``queued`` with its job for a
background run (the job joins the same transaction: a rolled-back admission leaves neither).
A certain failure is a refusal (``DomainError``, 4xx) here, never a stored failed execution.
Every admitted run is audited here (``execution.start``), once for every interface, in the
transaction that stores it: no execution without its entry, no entry without its execution.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from agents.core import queue
from agents.core.claim import Claimed, load_for_run
from agents.core.idempotency import (
    IdempotencyInProgress,
    IdempotencyKey,
    IdempotencyKeyReused,
    ReplayedRefusal,
    record_refusal,
    reserve,
)
from agents.core.limits import (
    Reservation,
    admit_within_quota,
    check_request,
    first_call_bound,
    take_execution_rate,
)
from agents.core.requests import RunRequest
from agents.core.run_config import agent_for_run, prices_for_run
from agents.engine import (
    ExecutionInput,
    InvalidInput,
    MappingError,
    PriceTable,
    map_input,
    validate_input,
)
from agents.models import Agent, Execution, ExecutionStatus, new_execution_id
from config.errors import DomainError, ValidationFailed
from config.sql import insert_together
from tenants.audit.models import AuditLog
from tenants.audit.services import audit_entry
from tenants.plans import limits_for


@dataclass(frozen=True)
class Admitted:
    """A stored execution, and (for a run that starts here and now) what it runs with."""

    execution: Execution
    claimed: Claimed | None = None
    # True when an Idempotency-Key repeat found the execution its first request started.
    replayed: bool = False


@dataclass(frozen=True)
class Origin:
    """Who asked, for the record: the principal's audit name and the request's id."""

    actor: str
    request_id: str = ""
    parent_id: str | None = None
    depth: int = 0
    # Whose per-key hourly execution bucket the run takes from (the API key, else the actor).
    rate_key: str = ""


def check_input_schema(agent: Agent, request: RunRequest, schema_name: str) -> None:
    """Refuse, before anything runs, an input that does not match the agent's input schema.

    The engine checks the same thing (and stays the authority); checking here turns a certain
    failure into a 400 instead of a stored failed execution, on every interface.
    """
    if agent.input_schema is None:
        return
    mapping = request.input_mapping if request.input_mapping is not None else agent.input_mapping
    context = {**request.context, "tenant_id": schema_name, "execution_id": ""}
    try:
        mapped = map_input(
            context,
            mapping or {},
            ExecutionInput(message=request.message, parameters=request.parameters),
        )
        validate_input(mapped, agent.input_schema)
    except InvalidInput as exc:
        raise ValidationFailed(f"input: {exc.message}", details={"input": [exc.message]}) from None
    except MappingError:
        return  # the engine reports a broken mapping as a failed execution, with its code


def _replay(execution_id: str) -> Admitted:
    execution = Execution.objects.select_related("agent").get(pk=execution_id)
    return Admitted(execution, None, replayed=True)


def _new_execution(
    schema_name: str,
    agent: Agent,
    request: RunRequest,
    origin: Origin,
    execution_id: str,
    reserved: Reservation,
) -> Execution:
    """The execution row to insert (not saved yet)."""
    background = request.mode == "background"
    execution = Execution(
        id=execution_id,
        agent=agent,
        agent_version=agent.version,
        request_input=request.stored_input(),
        options=request.options(),
        status=ExecutionStatus.QUEUED if background else ExecutionStatus.RUNNING,
        started_at=None if background else timezone.now(),
        requested_model=request.model or agent.model,
        parent_id=origin.parent_id,
        principal=origin.actor[:200],
        request_id=origin.request_id[:128],
        reserved_tokens=reserved.tokens,
        reserved_cost=reserved.cost,
    )
    # The platform owns tenant_id and execution_id in the context: a caller cannot set them.
    execution.context = {**request.context, "tenant_id": schema_name, "execution_id": execution_id}
    return execution


def _start_entry(execution: Execution, request: RunRequest, origin: Origin) -> AuditLog:
    details: dict[str, object] = {"agent": str(execution.agent_id), "mode": request.mode}
    if origin.parent_id:
        details["parent"] = origin.parent_id
    return audit_entry(
        actor=origin.actor,
        action="execution.start",
        target_type="execution",
        target_id=execution.pk,
        request_id=origin.request_id,
        details=details,
    )


def admit(
    schema_name: str, request: RunRequest, origin: Origin, key: IdempotencyKey | None = None
) -> Admitted:
    """Check and store one run (sync, in ``schema_name``). Raises ``DomainError`` (4xx) for a
    run that may not start; with a key, that refusal is stored for the key's repeats."""
    execution_id = new_execution_id()
    background = request.mode == "background"
    limits = limits_for(schema_name)
    # Always a transaction: the execution and its audit entry stand or fall together (as do
    # the key and the job, and a quota decision with the execution that takes from it).
    try:
        with transaction.atomic():
            if key is not None:
                prior = reserve(key, execution_id=execution_id)
                if prior is not None:
                    if prior.refusal is not None:
                        raise prior.refusal
                    return _replay(prior.execution_id)
            # Cached per process (no query for a known agent): shared, so only read here.
            agent = agent_for_run(schema_name, request.agent_ref)
            if not agent.enabled:
                raise ValidationFailed("agent_id: the agent is disabled")
            request = check_request(limits, agent, request)
            check_input_schema(agent, request, schema_name)
            if origin.depth == 0:
                take_execution_rate(limits, schema_name, origin.rate_key or origin.actor)
            prices = prices_for_run(schema_name) if limits.cost_budget is not None else None
            reserved = admit_within_quota(
                schema_name,
                limits,
                foreground=not background,
                bound=first_call_bound(agent, request, prices[0] if prices else PriceTable()),
            )
            execution = _new_execution(schema_name, agent, request, origin, execution_id, reserved)
            claimed = None
            if background:
                queue.enqueue(schema_name=schema_name, execution_id=execution_id)
            else:
                claimed = load_for_run(
                    schema_name,
                    agent=agent,
                    execution=execution,
                    request=request,
                    depth=origin.depth,
                    limits=limits,
                    prices=prices,
                )
            # The execution and its audit entry in one round trip; the entry last: the audit
            # chain's per-tenant lock is held from its INSERT until this transaction commits.
            insert_together(execution, _start_entry(execution, request, origin))
            return Admitted(execution, claimed)
    except (ReplayedRefusal, IdempotencyKeyReused, IdempotencyInProgress):
        raise  # about the key itself, not an answer to store under it
    except DomainError as exc:
        if key is not None:
            record_refusal(key, exc)
        raise
