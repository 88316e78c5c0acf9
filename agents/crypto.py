"""Encryption at rest for provider secrets (API keys, extra headers).

Keys come from ``FIELD_ENCRYPTION_KEYS`` (``kid=<urlsafe base64 Fernet key>,...``), kept outside the
database and separate from ``SECRET_KEY``. The first key encrypts; every listed key decrypts.
Each stored value starts with the id of the key that sealed it (``kid$token``), so
``reencrypt_secrets`` can find the values an old key still protects and move them to the new one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from django.core.exceptions import ImproperlyConfigured

SEPARATOR = "$"


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with any configured key."""


@dataclass(frozen=True)
class FieldKeyRing:
    active_kid: str
    keys: dict[str, Fernet]

    def encrypt(self, plaintext: str) -> str:
        token = self.keys[self.active_kid].encrypt(plaintext.encode()).decode()
        return f"{self.active_kid}{SEPARATOR}{token}"

    def decrypt(self, stored: str) -> str:
        kid, sep, token = stored.partition(SEPARATOR)
        fernet = self.keys.get(kid) if sep else None
        if fernet is None:
            raise SecretUnreadable(f"secret sealed with unknown key id {kid!r}")
        try:
            return fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable(f"secret does not decrypt with key {kid!r}") from None

    @staticmethod
    def key_id_of(stored: str) -> str:
        return stored.partition(SEPARATOR)[0]


def parse_key_ring(spec: str) -> FieldKeyRing:
    keys: dict[str, Fernet] = {}
    order: list[str] = []
    for item in spec.split(","):
        kid, sep, material = item.strip().partition("=")
        if not sep or not kid or not material or SEPARATOR in kid:
            raise ImproperlyConfigured(
                "FIELD_ENCRYPTION_KEYS must look like 'kid=<fernet key>,kid2=<older key>'"
            )
        try:
            keys[kid] = Fernet(material.strip())
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS: key {kid!r} is not a Fernet key: {exc}"
            ) from None
        order.append(kid)
    return FieldKeyRing(order[0], keys)


@functools.cache
def field_key_ring() -> FieldKeyRing:
    from django.conf import settings

    return parse_key_ring(settings.FIELD_ENCRYPTION_KEYS)


def encrypt_secret(plaintext: str) -> str:
    return field_key_ring().encrypt(plaintext) if plaintext else ""


def decrypt_secret(stored: str) -> str:
    return field_key_ring().decrypt(stored) if stored else ""
