"""Runs of a conversation: what the OpenAI-compatible endpoint starts, for an agent or a model.

A caller names either ``agent:<slug>`` (that agent runs: its prompts, tools, retries and
fallbacks apply, and the messages become its input) or a model the tenant may call (a gateway
call: the model answers the messages through the tenant's provider credential, with retries,
circuit breakers and fallbacks, and the caller's own tools are offered to it and handed back,
never executed here).

Both are ordinary executions: admitted, limited, stored, streamed and audited by the same core
as every other run. A gateway call is stored as a run of the credential's *gateway agent*
(``gateway-<credential>``), an ordinary agent the platform creates on the first call through
that credential (empty prompts, no tools, provider defaults for sampling, 3 attempts 1 s
apart). It is what the executions API, usage and audit name; a tenant may tune its retries,
fallbacks and timeout like any agent's, and calls pin the version they ran with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from agents.core.handle import RunHandle
from agents.core.idempotency import (
    IdempotencyKey,
    body_fingerprint,
    idempotency_scope,
    parse_idempotency_key,
    record_refusal,
)
from agents.core.requests import RunMode, parse_run_request
from agents.core.start import run_request
from agents.engine import VIRTUAL_MODELS, is_virtual
from agents.models import Agent, ModelPrice, ProviderCredential
from agents.providers.base import Message, ToolSpec
from agents.services.agents import agent_create
from config.errors import Conflict, DomainError, NotFound, ValidationFailed
from tenants.access import authorize_async
from tenants.context import in_schema
from tenants.principals import Principal
from tenants.roles import Permission

AGENT_PREFIX = "agent:"
GATEWAY_PREFIX = "gateway-"
GATEWAY_ACTOR = "platform:gateway"


class ModelNotFound(NotFound):
    """The model names nothing this tenant may call (another tenant's agent included)."""

    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model {model!r} does not exist or you do not have access to it.",
            details={"model": model},
        )


@dataclass(frozen=True)
class Conversation:
    """A transport's request, in neutral terms: the model, the messages, the caller's tools,
    and sampling ``parameters`` as the canonical body names them (``temperature``, ``top_p``,
    ``max_tokens``, ``frequency_penalty``, ``presence_penalty``), validated by the core."""

    model: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    stop: tuple[str, ...] = ()
    # The caller's end-user id (OpenAI's ``user``), kept in the context as ``user_context.user``.
    user: str | None = None

    @property
    def agent_slug(self) -> str | None:
        if self.model.startswith(AGENT_PREFIX):
            return self.model[len(AGENT_PREFIX) :]
        return None


# ---- what the model names (sync, in the tenant's schema) ----


def _routing_credential(model: str) -> ProviderCredential | None:
    """The credential a model is called through: a price-table row routing it, else an enabled
    agent using it; for a virtual model, any routable credential (the engine resolves it)."""
    rows = ModelPrice.objects.select_related("credential").filter(
        enabled=True, credential__isnull=False
    )
    if is_virtual(model):
        row = rows.order_by("model").first()
        return row.credential if row is not None else None
    row = rows.filter(model=model).first()
    if row is not None:
        return row.credential
    agent = (
        Agent.objects.select_related("credential")
        .filter(enabled=True, model=model)
        .exclude(slug__startswith=GATEWAY_PREFIX)
        .order_by("slug")
        .first()
    )
    return agent.credential if agent is not None else None


def gateway_slug(credential: ProviderCredential) -> str:
    return f"{GATEWAY_PREFIX}{slugify(credential.name)[:80] or credential.pk}"


def gateway_agent(credential: ProviderCredential, model: str, schema_name: str) -> Agent:
    """The credential's gateway agent, created on first use (two first calls at once: one
    creates it, the other finds it)."""
    slug = gateway_slug(credential)
    for _ in range(2):
        agent = Agent.objects.select_related("credential").filter(slug=slug).first()
        if agent is not None:
            if agent.credential_id != credential.pk:
                raise Conflict(
                    f"model: the agent {slug!r} is not this credential's gateway agent; "
                    "rename it to call models through that credential"
                )
            return agent
        try:
            with transaction.atomic():
                return agent_create(
                    data={
                        "slug": slug,
                        "name": f"Gateway ({credential.name})",
                        "description": "Model calls of the OpenAI-compatible endpoint "
                        "through this credential (created by the platform).",
                        "credential": credential,
                        "model": model,
                        "temperature": None,
                        "top_p": None,
                        "max_tokens": None,
                        "retry_max_attempts": 3,
                        "retry_backoff_seconds": 1.0,
                    },
                    actor=GATEWAY_ACTOR,
                    schema_name=schema_name,
                )
        except (IntegrityError, Conflict):
            continue  # created by a concurrent first call: read it
    raise Conflict("model: the gateway agent could not be created; retry")


def conversation_target(model: str, schema_name: str) -> tuple[str, str | None]:
    """(agent id, model override) for what ``model`` names; ``ModelNotFound`` otherwise."""
    if model.startswith(AGENT_PREFIX):
        slug = model[len(AGENT_PREFIX) :]
        agent = Agent.objects.filter(slug=slug).only("id").first() if slug else None
        if agent is None:
            raise ModelNotFound(model)
        return agent.id, None
    if is_virtual(model) and model not in VIRTUAL_MODELS:
        raise ModelNotFound(model)
    credential = _routing_credential(model)
    if credential is None:
        raise ModelNotFound(model)
    return gateway_agent(credential, model, schema_name).id, model


# ---- starting ----


def _last_user_text(messages: tuple[Message, ...]) -> str | None:
    for message in reversed(messages):
        if message.role == "user":
            return message.content
    return None


def _build(
    conversation: Conversation, mode: RunMode, schema_name: str
) -> tuple[str, Any, str | None]:
    if not conversation.messages:
        raise ValidationFailed("messages: at least one message", details={"messages": ["empty"]})
    if conversation.agent_slug is not None:
        if conversation.tools:
            raise ValidationFailed(
                "tools: an agent runs its own tools; pass tools with a model, not an agent",
                details={"tools": ["not with an agent model"]},
            )
        if conversation.messages[-1].role != "user":
            raise ValidationFailed(
                "messages: the last message to an agent must be a user message",
                details={"messages": ["last must be user"]},
            )
    agent_id, model = conversation_target(conversation.model, schema_name)
    body: dict[str, Any] = {
        "input": {
            "message": _last_user_text(conversation.messages),
            "parameters": dict(conversation.parameters),
        }
    }
    if model is not None:
        body["execution_config"] = {"model": model}
    if conversation.user is not None:
        body["context"] = {"user_context": {"user": conversation.user}}
    return agent_id, body, model


async def start_conversation(
    *,
    principal: Principal,
    conversation: Conversation,
    mode: RunMode,
    request_id: str = "",
    idempotency_key: str | None = None,
    fingerprint: Any = None,
) -> RunHandle:
    """Start a conversation run (``mode``: ``blocking`` or ``streamed``) and return its handle.

    Refusals as for :func:`agents.core.start_run`, plus ``ModelNotFound`` (404) when the model
    names nothing of this tenant's. ``fingerprint``: what identifies the request for its
    ``Idempotency-Key`` (the caller's body as sent); a repeat gets the first one's execution.
    """
    await authorize_async(principal, Permission.EXECUTIONS_RUN, action="run")
    schema_name = principal.schema_name
    raw_key = parse_idempotency_key(idempotency_key)
    key = None
    if raw_key is not None:
        digest = body_fingerprint(agent_ref=conversation.model, mode=mode, body=fingerprint)
        key = IdempotencyKey(idempotency_scope(principal), raw_key, digest)
    try:
        agent_id, body, _ = await in_schema(schema_name, _build, conversation, mode, schema_name)
        request = parse_run_request(body, agent_ref=agent_id, mode=mode)
    except DomainError as refusal:
        if key is not None:
            await in_schema(schema_name, record_refusal, key, refusal)
        raise
    request = dataclasses.replace(
        request,
        messages=conversation.messages,
        client_tools=conversation.tools,
        stop=conversation.stop,
    )
    return await run_request(
        principal=principal, request=request, request_id=request_id, key=key, checked=True
    )
