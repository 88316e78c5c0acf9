"""Provider credentials: validated (SSRF included) and sealed before they are stored.

The admin form and the REST API (``/credentials``) both save through :func:`credential_save`;
the REST API's create/update/delete/test add body checks, conflicts and audit entries around
it. Secrets (the API key, the values of extra headers) are write-only everywhere: answers say
``has_api_key`` and list header names, never a value, and audit entries name changed fields only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time
import uuid
from typing import Any, cast
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from agents.crypto import decrypt_secret, encrypt_secret, field_key_ring
from agents.models import Agent, ModelPrice, ProviderCredential, ProviderKind
from agents.providers import ChatRequest, Message, ProviderError, complete, get_provider
from agents.providers.base import ErrorKind, ProviderConfig
from agents.providers.base import ProviderKind as EngineProviderKind
from agents.providers.ssrf import UnsafeURL, check_url
from config.errors import Conflict, NotFound, ValidationFailed
from tenants.audit.models import AuditOutcome
from tenants.audit.services import audit_record
from tenants.context import tenant_connection

# Headers that would let a credential impersonate another caller or break the request framing.
_FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})

DEFAULT_BASE_URLS: dict[str, str] = {
    ProviderKind.OPENAI: "https://api.openai.com/v1",
    ProviderKind.ANTHROPIC: "https://api.anthropic.com",
    ProviderKind.GOOGLE: "https://generativelanguage.googleapis.com",
    ProviderKind.OLLAMA: "",
    ProviderKind.ECHO: "",
}


def validate_base_url(url: str) -> None:
    """Refuse URLs that reach loopback, private, link-local or metadata addresses (in any
    notation, or via a name resolving to one) unless the operator allow-listed them."""
    allowed = tuple(settings.PROVIDER_ALLOWED_PRIVATE)
    try:
        check_url(url, allowed=allowed, resolve=False)  # scheme, literal IPs in every notation
        # A name that does not resolve now (DNS down, a host of a network not reachable from
        # here) is accepted: it is resolved and checked again at every connect.
        if _resolves(urlsplit(url).hostname or ""):
            check_url(url, allowed=allowed, resolve=True)
    except UnsafeURL as exc:
        raise _fail("base_url", str(exc)) from None


def _fail(field: str, message: str) -> ValidationFailed:
    """A refusal naming its field, in the message (``"field: why"``, which the admin form reads)
    and in ``details`` (which API clients read)."""
    return ValidationFailed(f"{field}: {message}", details={field: [message]})


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return True


def _clean_headers(headers: dict[str, Any] | None) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, dict):
        raise _fail("extra_headers", "must be an object of header names to values")
    clean: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not name.replace("-", "").isalnum():
            raise _fail("extra_headers", f"{name!r} is not a valid header name")
        if name.lower() in _FORBIDDEN_HEADERS:
            raise _fail("extra_headers", f"{name!r} may not be set")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise _fail("extra_headers", f"value of {name!r} must be a single-line string")
        clean[name] = value
    return clean


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def credential_secrets_stay(
    credential_id: Any, base_url: str, api_key: str | None, extra_headers: dict[str, Any] | None
) -> None:
    """A stored key (or header) is never sent to another host than the one it was entered for:
    otherwise anyone allowed to edit a credential could point it at their own server and read
    a secret they cannot see. Moving the base URL elsewhere means entering the secrets again.
    Compares with the row as stored (a form may already have changed the instance)."""
    stored = ProviderCredential.objects.filter(pk=credential_id).first()
    if stored is None or _origin(base_url) == _origin(stored.base_url):
        return
    if api_key is None and stored.api_key_encrypted:
        raise ValidationFailed(
            "api_key: enter the key again: the base URL moved to another host, and a stored "
            "key is never sent to a new host",
            details={"api_key": ["required when the base URL moves to another host"]},
        )
    if extra_headers is None and stored.extra_headers_encrypted:
        raise ValidationFailed(
            "extra_headers: enter the headers again: the base URL moved to another host",
            details={"extra_headers": ["required when the base URL moves to another host"]},
        )


def credential_save(
    *,
    credential: ProviderCredential | None = None,
    name: str,
    kind: str,
    base_url: str = "",
    api_key: str | None = None,
    extra_headers: dict[str, Any] | None = None,
) -> ProviderCredential:
    """Create or update a credential. ``api_key=None`` (or ``extra_headers=None``) keeps the
    stored value on update: secrets are write-only and never read back to the form."""
    if kind not in ProviderKind.values:
        raise _fail("kind", f"must be one of {', '.join(ProviderKind.values)}")
    if not name.strip():
        raise _fail("name", "must not be empty")
    base_url = (base_url or DEFAULT_BASE_URLS[kind]).strip().rstrip("/")
    if kind != ProviderKind.ECHO:
        if not base_url:
            raise _fail("base_url", f"required for {kind} credentials")
        validate_base_url(base_url)
    if credential is not None and credential.pk is not None:
        credential_secrets_stay(credential.pk, base_url, api_key, extra_headers)
    credential = credential or ProviderCredential()
    credential.name, credential.kind, credential.base_url = name.strip(), kind, base_url
    if api_key is not None:
        credential.api_key_encrypted = encrypt_secret(api_key.strip())
    if extra_headers is not None:
        clean = _clean_headers(extra_headers)
        credential.extra_headers_encrypted = encrypt_secret(json.dumps(clean)) if clean else ""
    taken = Conflict(
        f"name: a credential {credential.name!r} already exists",
        details={"name": ["already exists"]},
    )
    if ProviderCredential.objects.filter(name=credential.name).exclude(pk=credential.pk).exists():
        raise taken
    try:
        with transaction.atomic():
            credential.save()
    except IntegrityError:  # the same name saved by a concurrent request since the check
        raise taken from None
    return credential


def provider_config_for(credential: ProviderCredential) -> ProviderConfig:
    """The engine's view of a credential, secrets opened. Lives in memory only.

    Its circuit breaker is the tenant's own for this credential (``<schema>:<credential id>``,
    the schema the credential was just read from): one tenant's failing key or exhausted quota
    never opens a breaker for another tenant on the same provider.
    """
    headers = decrypt_secret(credential.extra_headers_encrypted)
    return ProviderConfig(
        # The column's choices are the engine's kinds (checked on save); get_provider refuses
        # any other value as an unknown provider kind.
        kind=cast(EngineProviderKind, credential.kind),
        base_url=credential.base_url,
        api_key=decrypt_secret(credential.api_key_encrypted),
        extra_headers=json.loads(headers) if headers else {},
        allowed_private=tuple(settings.PROVIDER_ALLOWED_PRIVATE),
        breaker_key=f"{tenant_connection.schema_name}:{credential.pk}",
    )


def credentials_reencrypt() -> int:
    """Re-seal every secret not sealed with the active key. Returns how many rows changed.
    Runs in the current schema; the command loops over tenants."""
    ring = field_key_ring()
    changed = 0
    for credential in ProviderCredential.objects.select_for_update().all():
        fields = []
        for field in ("api_key_encrypted", "extra_headers_encrypted"):
            stored = getattr(credential, field)
            if stored and ring.key_id_of(stored) != ring.active_kid:
                setattr(credential, field, ring.encrypt(ring.decrypt(stored)))
                fields.append(field)
        if fields:
            credential.save(update_fields=fields)
            changed += 1
    return changed


# ---- the REST API: body checks, create/update/delete with audit, test-connection ----

CREDENTIAL_FIELDS = frozenset({"name", "kind", "base_url", "api_key", "extra_headers"})
MAX_NAME_CHARS = 100
MAX_BASE_URL_CHARS = 500
MAX_SECRET_CHARS = 4096
MAX_HEADERS = 20
# One test-connection call: a short prompt, one token of answer, bounded as a whole (a read
# timeout alone would let an upstream that trickles bytes hold the request for minutes).
TEST_PROMPT = "ping"
TEST_MAX_TOKENS = 1
TEST_CONNECT_TIMEOUT_SECONDS = 5.0
TEST_TIMEOUT_SECONDS = 20.0


def credential_check(data: Any, *, partial: bool) -> dict[str, Any]:
    """The shape of a REST body (types, sizes, unknown fields); ``ValidationFailed`` names the
    first wrong field. The values are checked again by :func:`credential_save` (SSRF, kinds)."""
    if not isinstance(data, dict):
        raise _fail("body", "must be a JSON object")
    unknown = sorted(set(data) - CREDENTIAL_FIELDS)
    if unknown:
        raise _fail(unknown[0], "unknown field")
    if not partial:
        for required in ("name", "kind"):
            if required not in data:
                raise _fail(required, "required")
    if "name" in data:
        name = data["name"]
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME_CHARS:
            raise _fail("name", f"a non-empty string of at most {MAX_NAME_CHARS} characters")
    if "kind" in data and data["kind"] not in ProviderKind.values:
        raise _fail("kind", f"must be one of {', '.join(ProviderKind.values)}")
    if "base_url" in data:
        url = data["base_url"]
        if not isinstance(url, str) or len(url) > MAX_BASE_URL_CHARS:
            raise _fail("base_url", f"an http(s) URL of at most {MAX_BASE_URL_CHARS} characters")
        if url.strip():
            # Checked whatever the kind: an echo credential changed to another kind later keeps
            # its URL, and nothing unchecked should sit in the column meanwhile.
            validate_base_url(url.strip().rstrip("/"))
    if "api_key" in data:
        key = data["api_key"]
        if not isinstance(key, str) or len(key) > MAX_SECRET_CHARS or "\n" in key or "\r" in key:
            raise _fail("api_key", f"a single-line string of at most {MAX_SECRET_CHARS} characters")
    if "extra_headers" in data:
        headers = data["extra_headers"]
        if not isinstance(headers, dict):
            raise _fail("extra_headers", "must be an object of header names to values")
        if len(headers) > MAX_HEADERS:
            raise _fail("extra_headers", f"at most {MAX_HEADERS} headers")
        if any(isinstance(v, str) and len(v) > MAX_SECRET_CHARS for v in headers.values()):
            raise _fail("extra_headers", f"values of at most {MAX_SECRET_CHARS} characters")
        _clean_headers(headers)
    return data


def _audit(
    credential: ProviderCredential,
    action: str,
    actor: str,
    schema_name: str,
    *,
    outcome: str = AuditOutcome.SUCCESS,
    **details: Any,
) -> None:
    # Field names, kinds and outcomes only: never a key, a header value or a base URL's
    # credentials.
    audit_record(
        schema_name=schema_name,
        actor=actor,
        action=action,
        outcome=outcome,
        target_type="provider_credential",
        target_id=str(credential.pk),
        details={"name": credential.name, **details},
    )


def credential_create(*, data: Any, actor: str, schema_name: str) -> ProviderCredential:
    """Create a credential from a REST body (``name``, ``kind``, ``base_url``?, ``api_key``?,
    ``extra_headers``?) and audit it. 400 naming the field; 409 for a name in use."""
    credential_check(data, partial=False)
    credential = credential_save(
        name=data["name"],
        kind=data["kind"],
        base_url=data.get("base_url") or "",
        api_key=data.get("api_key"),
        extra_headers=data.get("extra_headers"),
    )
    _audit(credential, "credential.create", actor, schema_name, fields=sorted(data))
    return credential


def credential_update(
    *, credential: ProviderCredential, changes: Any, actor: str, schema_name: str
) -> ProviderCredential:
    """Change a credential. A field left out keeps its value: without ``api_key`` (or
    ``extra_headers``) the stored secret stays, unless the base URL moves to another host, in
    which case it must be entered again. ``"api_key": ""`` removes the key, ``{}`` the headers.

    The row is locked for the change, so two concurrent updates cannot mix their fields. A
    rename is refused while agents' fallbacks name the credential (they name it by name)."""
    credential_check(changes, partial=True)
    if not changes:
        raise _fail("body", "nothing to change")
    with transaction.atomic():
        locked = ProviderCredential.objects.select_for_update().get(pk=credential.pk)
        if "name" in changes and changes["name"].strip() != locked.name:
            naming = _fallback_users(locked.name)
            if naming:
                raise Conflict(
                    f"name: fallbacks of agents name this credential: {', '.join(naming[:10])}; "
                    "change them first",
                    details={"agents": naming},
                )
        saved = credential_save(
            credential=locked,
            name=changes.get("name", locked.name),
            kind=changes.get("kind", locked.kind),
            base_url=changes.get("base_url", locked.base_url),
            api_key=changes.get("api_key"),
            extra_headers=changes.get("extra_headers"),
        )
    _audit(saved, "credential.update", actor, schema_name, fields=sorted(changes))
    return saved


def _fallback_users(name: str) -> list[str]:
    """Slugs of the agents whose ``fallback_models`` name the credential ``name``."""
    return sorted(
        agent.slug
        for agent in Agent.objects.only("slug", "fallback_models")
        if any(
            isinstance(item, dict) and item.get("credential") == name
            for item in agent.fallback_models or []
        )
    )


def credential_users(credential: ProviderCredential) -> dict[str, list[str]]:
    """What uses the credential: agents (as their credential or a fallback's) and price rows."""
    agents = set(Agent.objects.filter(credential=credential).values_list("slug", flat=True))
    agents.update(_fallback_users(credential.name))
    prices = ModelPrice.objects.filter(credential=credential).values_list("model", flat=True)
    return {"agents": sorted(agents), "model_prices": sorted(prices)}


def credential_delete(*, credential: ProviderCredential, actor: str, schema_name: str) -> None:
    """Remove a credential nothing uses; 409 naming the agents and model prices otherwise.

    The row is locked first: a concurrent insert of an agent or a price referencing it waits
    for this transaction (its foreign key check locks the row too), so nothing can start using
    the credential between the check and the delete."""
    with transaction.atomic():
        locked = ProviderCredential.objects.select_for_update().filter(pk=credential.pk).first()
        if locked is None:
            raise NotFound("Credential not found.")
        users = credential_users(locked)
        if users["agents"] or users["model_prices"]:
            named = [
                f"{label} {', '.join(users[key][:10])}"
                for key, label in (("agents", "agents"), ("model_prices", "model prices"))
                if users[key]
            ]
            raise Conflict(f"the credential is in use by {'; '.join(named)}", details=users)
        try:
            locked.delete()
        except ProtectedError:  # defensive: the lock above should leave no agent to find
            raise Conflict("the credential is in use by agents", details=users) from None
    _audit(credential, "credential.delete", actor, schema_name)


def credential_get(ref: str) -> ProviderCredential:
    """A credential of the current schema by id or name; NotFound otherwise."""
    credential = ProviderCredential.objects.filter(name=ref).first()
    if credential is None:
        try:
            credential = ProviderCredential.objects.filter(pk=uuid.UUID(ref)).first()
        except ValueError:
            credential = None  # neither a name nor an id
    if credential is None:
        raise NotFound("Credential not found.")
    return credential


def credential_header_names(credential: ProviderCredential) -> list[str]:
    """The names of the extra headers (opened in memory to read them; values never leave)."""
    stored = decrypt_secret(credential.extra_headers_encrypted)
    return sorted(json.loads(stored)) if stored else []


def credential_json(credential: ProviderCredential) -> dict[str, Any]:
    return {
        "id": str(credential.id),
        "name": credential.name,
        "kind": credential.kind,
        "base_url": credential.base_url,
        "has_api_key": credential.has_api_key,
        "extra_header_names": credential_header_names(credential),
        "created_at": credential.created_at.isoformat(),
        "updated_at": credential.updated_at.isoformat(),
    }


def _test_model(credential: ProviderCredential, data: Any) -> str:
    """The model a test call asks for: the body's ``model``, else the credential's first
    priced model, else the model of the first agent using it."""
    if not isinstance(data, dict):
        raise _fail("body", "must be a JSON object")
    unknown = sorted(set(data) - {"model"})
    if unknown:
        raise _fail(unknown[0], "unknown field")
    model = data.get("model")
    if model is not None:
        if not isinstance(model, str) or not model.strip() or len(model) > 200:
            raise _fail("model", "a model name of at most 200 characters")
        return model.strip()
    if credential.kind == ProviderKind.ECHO:
        return "echo"
    priced = (
        ModelPrice.objects.filter(credential=credential, enabled=True)
        .order_by("model")
        .values_list("model", flat=True)
        .first()
    )
    if priced:
        return priced
    used = (
        Agent.objects.filter(credential=credential)
        .order_by("slug")
        .values_list("model", flat=True)
        .first()
    )
    if used:
        return used
    raise _fail("model", "required: no model price or agent of this credential names a model")


async def _probe(config: ProviderConfig, model: str) -> None:
    request = ChatRequest(
        model=model,
        messages=(Message(role="user", content=TEST_PROMPT),),
        max_tokens=TEST_MAX_TOKENS,
    )
    try:
        async with asyncio.timeout(TEST_TIMEOUT_SECONDS):
            await complete(get_provider(config), request)
    except TimeoutError:
        raise ProviderError(
            ErrorKind.TIMEOUT, f"no complete answer within {TEST_TIMEOUT_SECONDS:g} s"
        ) from None


def credential_test(
    *, credential: ProviderCredential, data: Any, actor: str, schema_name: str
) -> dict[str, Any]:
    """Make one small real call with the credential (a one-token completion of ``model``) and
    say how it went: ``{ok, latency_ms, model, error?: {kind, message, status_code}}``.

    The call goes through the provider adapters, so through the same pooled clients, timeouts
    and connect-time SSRF guard as every run (an allow-list entry removed since the credential
    was saved refuses it). It bypasses the circuit breaker on purpose: a test asks whether the
    provider answers now. Provider messages are redacted by the adapters; the outcome (never
    a secret) is audited."""
    model = _test_model(credential, data)
    config = dataclasses.replace(
        provider_config_for(credential),
        connect_timeout=TEST_CONNECT_TIMEOUT_SECONDS,
        read_timeout=TEST_TIMEOUT_SECONDS,
    )
    error: ProviderError | None = None
    started = time.monotonic()
    try:
        async_to_sync(_probe)(config, model)
    except ProviderError as exc:
        error = exc
    latency_ms = int((time.monotonic() - started) * 1000)
    result: dict[str, Any] = {"ok": error is None, "latency_ms": latency_ms, "model": model}
    if error is not None:
        result["error"] = {
            "kind": error.kind.value,
            "message": error.message,
            "status_code": error.status_code,
        }
    _audit(
        credential,
        "credential.test",
        actor,
        schema_name,
        outcome=AuditOutcome.SUCCESS if error is None else AuditOutcome.FAILURE,
        model=model,
        latency_ms=latency_ms,
        error_kind=error.kind.value if error is not None else None,
    )
    return result
