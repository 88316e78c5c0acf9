"""Agents: created and changed through these functions only, so that every change makes a new
immutable ``AgentVersion`` and an audit entry."""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.db.models import ProtectedError, Q

from agents.engine import AgentSnapshot, ModelTarget, RetryConfig, ToolDefinition
from agents.models import Agent, AgentVersion, Execution, ProviderCredential
from agents.services.credentials import provider_config_for
from agents.services.mcp_servers import mcp_tool_problem
from agents.services.tool_secrets import open_tool_secrets, seal_tool_secrets
from agents.validation import validate_agent_config
from config.errors import Conflict, LimitExceeded, NotFound, ValidationFailed
from tenants.audit.services import audit_record
from tenants.plans import limits_for

# Fields that make up an agent's configuration (and so its versions). ``credential`` is stored
# in versions as the credential's id.
CONFIG_FIELDS: tuple[str, ...] = (
    "slug",
    "name",
    "description",
    "model",
    "temperature",
    "max_tokens",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "stop_sequences",
    "system_prompt",
    "user_template",
    "context_instructions",
    "capabilities",
    "tools",
    "input_schema",
    "output_schema",
    "input_mapping",
    "output_mapping",
    "retry_max_attempts",
    "retry_backoff_seconds",
    "retry_on_errors",
    "timeout_seconds",
    "fallback_models",
    "max_tool_steps",
    "enabled",
)
WRITABLE_FIELDS = frozenset(CONFIG_FIELDS) | {"credential"}


def _agent_exists(ref: str) -> bool:
    return Agent.objects.filter(Q(slug=ref) | Q(id=ref)).exists()


def _credential_exists(name: str) -> bool:
    return ProviderCredential.objects.filter(name=name).exists()


def _config_of(agent: Agent) -> dict[str, Any]:
    config = {field: getattr(agent, field) for field in CONFIG_FIELDS}
    config["credential"] = str(agent.credential_id)
    return config


def _resolve_credential(value: Any) -> ProviderCredential:
    if isinstance(value, ProviderCredential):
        return value
    credential = ProviderCredential.objects.filter(
        Q(name=value) | Q(id=value) if _is_uuid(value) else Q(name=value)
    ).first()
    if credential is None:
        raise ValidationFailed(
            f"credential: no provider credential {value!r}", details={"credential": ["unknown"]}
        )
    return credential


def _is_uuid(value: Any) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _apply(agent: Agent, changes: dict[str, Any]) -> None:
    unknown = set(changes) - WRITABLE_FIELDS
    if unknown:
        field = sorted(unknown)[0]
        raise ValidationFailed(
            f"{field}: not a writable agent field", details={f: ["unknown field"] for f in unknown}
        )
    for field, value in changes.items():
        if field == "credential":
            agent.credential = _resolve_credential(value)
        elif field == "tools":
            agent.tools = seal_tool_secrets(value, stored=agent.tools)
        else:
            setattr(agent, field, value)
    if agent.credential_id is None:
        raise ValidationFailed("credential: required", details={"credential": ["required"]})
    agent_config_check(_config_of(agent))


def agent_config_check(config: dict[str, Any]) -> None:
    """Validate an agent configuration against the rules and this tenant's agents and
    credentials (current schema); ``ValidationFailed`` names the first wrong field."""
    validate_agent_config(
        config,
        self_slug=config.get("slug"),
        agent_exists=_agent_exists,
        credential_exists=_credential_exists,
        mcp_tool_problem=mcp_tool_problem,
    )


def agent_create(*, data: dict[str, Any], actor: str, schema_name: str) -> Agent:
    """Create an agent and its version 1. The caller's schema must be active (the request's
    tenant, or ``schema_context``); ``schema_name`` names it for the audit log."""
    agent = Agent()
    _apply(agent, dict(data))
    cap = limits_for(schema_name).max_agents
    with transaction.atomic():
        if cap is not None:
            # Serialised per tenant: two creations at once cannot both take the last place.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    [f"cba:agents:{schema_name}"],
                )
            if Agent.objects.count() >= cap:
                raise LimitExceeded(
                    "agent_limit_exceeded",
                    f"the tenant's plan allows {cap} agents; delete one or change the plan",
                    status=403,
                )
        if Agent.objects.filter(slug=agent.slug).exists():
            raise Conflict(f"slug: an agent {agent.slug!r} already exists")
        agent.version = 1
        agent.save()
        AgentVersion.objects.create(
            agent=agent, version=1, config=_config_of(agent), created_by=actor
        )
    audit_record(
        schema_name=schema_name,
        actor=actor,
        action="agent.create",
        target_type="agent",
        target_id=agent.id,
    )
    return agent


def agent_update(*, agent: Agent, changes: dict[str, Any], actor: str, schema_name: str) -> Agent:
    """Apply ``changes``; if the configuration differs, store it as the next version. The row
    is locked so two concurrent edits get two distinct version numbers."""
    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        before = _config_of(locked)
        _apply(locked, dict(changes))
        after = _config_of(locked)
        if after == before:
            return locked
        if (
            after["slug"] != before["slug"]
            and Agent.objects.filter(slug=after["slug"]).exclude(pk=locked.pk).exists()
        ):
            raise Conflict(f"slug: an agent {after['slug']!r} already exists")
        locked.version += 1
        locked.save()
        AgentVersion.objects.create(
            agent=locked, version=locked.version, config=after, created_by=actor
        )
    changed = sorted(k for k in after if after[k] != before.get(k))
    audit_record(
        schema_name=schema_name,
        actor=actor,
        action="agent.update",
        target_type="agent",
        target_id=locked.id,
        details={"version": locked.version, "fields": changed},
    )
    return locked


def agent_get(ref: str) -> Agent:
    """An agent of the current schema by id or slug; NotFound otherwise."""
    agent = Agent.objects.select_related("credential").filter(Q(id=ref) | Q(slug=ref)).first()
    if agent is None:
        raise NotFound("Agent not found.")
    return agent


def agent_snapshot(agent: Agent, *, version: int | None = None) -> AgentSnapshot:
    """The engine's frozen view of one version of the agent (default: the current one, which
    the row itself holds; older ones come from ``AgentVersion``). Credentials are opened in
    memory. The current version costs no query beyond the agent row with its credential, unless
    a fallback names another credential; an older one costs its version row and credential.

    Raises ``NotFound`` when that version (or the credential it used) no longer exists.
    """
    if version is None or version == agent.version:
        config = _config_of(agent)
        credential = agent.credential
        version = agent.version
    else:
        stored = AgentVersion.objects.filter(agent=agent, version=version).first()
        if stored is None:
            raise NotFound(f"version {version} of agent {agent.slug} no longer exists")
        config = stored.config
        found = ProviderCredential.objects.filter(pk=config.get("credential")).first()
        if found is None:
            raise NotFound(f"the credential of agent {agent.slug} v{version} no longer exists")
        credential = found
    provider = provider_config_for(credential)
    fallbacks: list[ModelTarget] = []
    items = config.get("fallback_models") or []
    names = {
        item["credential"] for item in items if isinstance(item, dict) and item.get("credential")
    }
    others = {c.name: c for c in ProviderCredential.objects.filter(name__in=names)} if names else {}
    for item in items:
        if isinstance(item, str) or not item.get("credential"):
            model = item if isinstance(item, str) else item["model"]
            fallbacks.append(ModelTarget(provider=provider, model=model))
        elif item["credential"] in others:
            fallbacks.append(
                ModelTarget(
                    provider=provider_config_for(others[item["credential"]]), model=item["model"]
                )
            )
    return AgentSnapshot(
        id=agent.id,
        slug=config["slug"],
        version=version,
        name=config["name"],
        provider=provider,
        model=config["model"],
        temperature=config.get("temperature"),
        max_tokens=config.get("max_tokens"),
        top_p=config.get("top_p"),
        frequency_penalty=config.get("frequency_penalty"),
        presence_penalty=config.get("presence_penalty"),
        stop_sequences=tuple(config.get("stop_sequences") or ()),
        system_prompt=config.get("system_prompt") or "",
        user_template=config.get("user_template") or "",
        context_instructions=config.get("context_instructions") or "",
        capabilities=tuple(config.get("capabilities") or ()),
        tools=tuple(
            ToolDefinition(
                name=tool["name"],
                description=tool.get("description", ""),
                parameters=tool.get("parameters") or {"type": "object"},
                kind=tool.get("kind", "http"),
                config=tool.get("config") or {},
            )
            for tool in open_tool_secrets(config.get("tools") or [])
        ),
        input_schema=config.get("input_schema"),
        output_schema=config.get("output_schema"),
        input_mapping=config.get("input_mapping") or {},
        output_mapping=config.get("output_mapping") or {},
        retry=RetryConfig(
            max_attempts=config.get("retry_max_attempts") or 1,
            backoff_seconds=float(config.get("retry_backoff_seconds") or 0),
            retry_on_errors=tuple(config.get("retry_on_errors", ())),
        ),
        timeout_seconds=config.get("timeout_seconds"),
        fallbacks=tuple(fallbacks),
        max_tool_steps=config.get("max_tool_steps") or 8,
    )


def agent_delete(*, agent: Agent, actor: str, schema_name: str) -> Agent | None:
    """Remove an agent that never ran; disable one that did. Returns the disabled agent, or
    None when it was removed."""
    try:
        with transaction.atomic():
            locked = Agent.objects.select_for_update().get(pk=agent.pk)
            if not Execution.objects.filter(agent=locked).exists():
                # An execution created after the check is refused by PROTECT: caught below.
                locked.delete()
                audit_record(
                    schema_name=schema_name,
                    actor=actor,
                    action="agent.delete",
                    target_type="agent",
                    target_id=agent.pk,
                )
                return None
    except ProtectedError:
        pass
    disabled = agent_update(
        agent=agent, changes={"enabled": False}, actor=actor, schema_name=schema_name
    )
    return agent_get(disabled.id)
