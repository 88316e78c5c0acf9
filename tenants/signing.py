"""The JWT signing key ring (Ed25519).

``JWT_SIGNING_KEYS`` lists ``kid=/path/to/key.pem`` pairs: the first key signs new tokens, all
of them verify, so a new key can be put first while tokens signed by the old one expire. The
algorithm is fixed here (EdDSA) and never read from a token.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.core.exceptions import ImproperlyConfigured

ALGORITHM = "EdDSA"


@dataclass(frozen=True)
class KeyRing:
    active_kid: str
    private_key: Ed25519PrivateKey
    public_keys: dict[str, Ed25519PublicKey]


def generate_key_file(path: Path) -> Path:
    """Write a new Ed25519 private key (PEM, mode 0600) unless the file exists already."""
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
    return path


def _load(path: str, kid: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"JWT_SIGNING_KEYS: key {kid!r} at {path} cannot be read: {exc}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured(f"JWT_SIGNING_KEYS: key {kid!r} is not an Ed25519 key")
    return key


@functools.cache
def key_ring() -> KeyRing:
    from django.conf import settings

    spec = settings.JWT_SIGNING_KEYS
    if not spec:
        # Only reachable in DEBUG (settings refuse an empty value otherwise).
        spec = f"dev={generate_key_file(Path(settings.DATA_DIR) / 'jwt' / 'dev.pem')}"
    pairs: list[tuple[str, str]] = []
    for item in spec.split(","):
        kid, sep, path = item.strip().partition("=")
        if not sep or not kid or not path:
            raise ImproperlyConfigured(
                "JWT_SIGNING_KEYS must look like 'kid=/path/key.pem,kid2=/path/old.pem'"
            )
        pairs.append((kid, path))
    keys = {kid: _load(path, kid) for kid, path in pairs}
    active = pairs[0][0]
    return KeyRing(active, keys[active], {kid: key.public_key() for kid, key in keys.items()})
