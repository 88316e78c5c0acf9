"""Provider credentials: validated (SSRF included) and sealed before they are stored."""

from __future__ import annotations

import json
import socket
from typing import Any, cast
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

from agents.crypto import decrypt_secret, encrypt_secret, field_key_ring
from agents.models import ProviderCredential, ProviderKind
from agents.providers.base import ProviderConfig
from agents.providers.base import ProviderKind as EngineProviderKind
from agents.providers.ssrf import UnsafeURL, check_url
from config.errors import ValidationFailed
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
        raise ValidationFailed(f"base_url: {exc}") from None


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
        raise ValidationFailed("extra_headers: must be an object of header names to values")
    clean: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not name.replace("-", "").isalnum():
            raise ValidationFailed(f"extra_headers: {name!r} is not a valid header name")
        if name.lower() in _FORBIDDEN_HEADERS:
            raise ValidationFailed(f"extra_headers: {name!r} may not be set")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise ValidationFailed(f"extra_headers: value of {name!r} must be a single-line string")
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
        raise ValidationFailed(f"kind: must be one of {', '.join(ProviderKind.values)}")
    if not name.strip():
        raise ValidationFailed("name: must not be empty")
    base_url = (base_url or DEFAULT_BASE_URLS[kind]).strip().rstrip("/")
    if kind != ProviderKind.ECHO:
        if not base_url:
            raise ValidationFailed(f"base_url: required for {kind} credentials")
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
    with transaction.atomic():
        credential.save()
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
