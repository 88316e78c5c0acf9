"""Provider credentials: sealed at rest with a rotating key ring, SSRF-checked at save."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django_tenants.utils import schema_context

from agents.crypto import field_key_ring, parse_key_ring
from agents.models import ProviderCredential
from agents.services.credentials import credential_save, provider_config_for
from config.errors import ValidationFailed
from tests.agents.conftest import make_credential

CANARY = "sk-canary-4242424242424242"


def test_api_key_is_encrypted_at_rest_and_opens_in_memory(in_alpha):
    credential = make_credential(
        kind="openai", base_url="https://api.openai.com/v1", api_key=CANARY
    )
    stored = ProviderCredential.objects.get(pk=credential.pk)
    assert CANARY not in stored.api_key_encrypted
    assert stored.api_key_encrypted.startswith("test-new$")
    assert provider_config_for(stored).api_key == CANARY
    assert CANARY not in repr(provider_config_for(stored))


def test_updating_without_a_key_keeps_the_stored_one(in_alpha):
    credential = make_credential(
        kind="openai", base_url="https://api.openai.com/v1", api_key=CANARY
    )
    credential_save(
        credential=credential,
        name=credential.name,
        kind="openai",
        base_url="https://api.openai.com/v2",
    )
    credential.refresh_from_db()
    assert provider_config_for(credential).api_key == CANARY
    assert credential.base_url == "https://api.openai.com/v2"


def test_a_stored_key_never_follows_the_base_url_to_another_host(in_alpha):
    credential = make_credential(
        kind="openai", base_url="https://api.openai.com/v1", api_key=CANARY
    )
    for elsewhere in ("https://example.com/v1", "http://api.openai.com/v1"):
        with pytest.raises(ValidationFailed) as refused:
            credential_save(
                credential=credential, name=credential.name, kind="openai", base_url=elsewhere
            )
        assert refused.value.message.startswith("api_key:")
    credential.refresh_from_db()
    assert credential.base_url == "https://api.openai.com/v1"
    # With the key entered again, the move is fine.
    credential_save(
        credential=credential,
        name=credential.name,
        kind="openai",
        base_url="https://example.com/v1",
        api_key="sk-new",
    )
    credential.refresh_from_db()
    assert provider_config_for(credential).api_key == "sk-new"


def test_rotation_reencrypts_secrets_sealed_with_an_old_key(in_alpha, settings):
    old_only = parse_key_ring(settings.FIELD_ENCRYPTION_KEYS.split(",")[1])
    credential = make_credential(kind="openai", base_url="https://api.openai.com/v1")
    ProviderCredential.objects.filter(pk=credential.pk).update(
        api_key_encrypted=old_only.encrypt(CANARY)
    )
    credential.refresh_from_db()
    assert credential.api_key_encrypted.startswith("test-old$")
    assert provider_config_for(credential).api_key == CANARY  # the old key still opens
    out = io.StringIO()
    call_command("reencrypt_secrets", stdout=out)
    credential.refresh_from_db()
    assert credential.api_key_encrypted.startswith(f"{field_key_ring().active_kid}$")
    assert provider_config_for(credential).api_key == CANARY
    assert "alpha: 1 credential(s)" in out.getvalue()


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest",
        "http://127.0.0.1:5432",
        "http://[::1]/v1",
        "http://0x7f000001/v1",
        "http://2130706433/v1",
        "http://localhost:11434",
        "http://10.0.0.8/v1",
        "ftp://example.com/",
    ],
)
def test_unsafe_base_urls_are_refused_at_save(in_alpha, url):
    with pytest.raises(ValidationFailed, match=r"^base_url:"):
        make_credential(kind="openai", base_url=url)
    assert not ProviderCredential.objects.filter(base_url=url).exists()


def test_operator_allow_list_lets_a_local_server_through(in_alpha, settings):
    settings.PROVIDER_ALLOWED_PRIVATE = ["localhost", "127.0.0.1"]
    credential = make_credential(kind="ollama", base_url="http://localhost:11434")
    assert credential.base_url == "http://localhost:11434"


def test_bad_extra_headers_are_refused(in_alpha):
    with pytest.raises(ValidationFailed, match="extra_headers"):
        credential_save(name="h", kind="echo", extra_headers={"Host": "evil"})
    with pytest.raises(ValidationFailed, match="extra_headers"):
        credential_save(name="h", kind="echo", extra_headers={"X-A": "line\r\nInjected: 1"})


def test_credentials_are_per_tenant(alpha, bravo):
    with schema_context(alpha.schema):
        make_credential(name="alpha-only")
    with schema_context(bravo.schema):
        assert not ProviderCredential.objects.filter(name="alpha-only").exists()


def test_each_tenants_credential_has_a_circuit_breaker_of_its_own(alpha, bravo):
    """Two tenants on the same provider URL never share a breaker: one tenant's failing key or
    exhausted quota must not open the breaker the other tenant's runs go through."""
    from agents.engine import BreakerRegistry

    configs = []
    for persona in (alpha, bravo):
        with schema_context(persona.schema):
            made = make_credential(kind="openai", base_url="https://api.openai.com/v1")
            configs.append(provider_config_for(made))
            assert configs[-1].breaker_key == f"{persona.schema}:{made.pk}"
    registry = BreakerRegistry()
    assert registry.get(configs[0]) is not registry.get(configs[1])
