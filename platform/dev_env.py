"""Write ``.env``: development settings for this checkout, with secrets of its own.

    python platform/dev_env.py            # what `make install` and `make run` do

Every documented command (``python manage.py create_tenant ...``) then runs with ``DEBUG`` on
and real random secrets, without exporting anything: ``manage.py`` reads ``.env`` (only the
variables not already set, never with ``CBA_ENV=production``, never for the test settings).
An existing ``.env`` is left alone: delete it to start again. Git-ignored; never for production.

Standard library plus ``cryptography`` (a dependency): it runs before Django is configured.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
# The built-in DEBUG default of config/settings.py (FIELD_ENCRYPTION_KEYS): kept second in
# the ring, so provider keys sealed by a checkout that ran without .env still open.
BUILTIN_DEV_FIELD_KEY = "dev=ZGV2LW9ubHktaW5zZWN1cmUtZmllbGQta2V5LTMyYnk="


def _jwt_key(path: Path) -> Path:
    # The file DEBUG uses when JWT_SIGNING_KEYS is unset (tenants/signing.py): tokens issued
    # before .env existed keep verifying.
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
    return path


def render(data_dir: Path) -> str:
    field_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()  # a Fernet key
    jwt_key = _jwt_key(data_dir / "jwt" / "dev.pem")
    return (
        "# Development settings of this checkout, written by platform/dev_env.py (make install,\n"
        "# make run). manage.py reads the ones not set in the environment; never with\n"
        "# CBA_ENV=production, never for the tests. Git-ignored. Delete it to get new secrets.\n"
        "DEBUG=1\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
        f"API_KEY_HMAC_SECRET={secrets.token_urlsafe(50)}\n"
        f"FIELD_ENCRYPTION_KEYS=local={field_key},{BUILTIN_DEV_FIELD_KEY}\n"
        f"JWT_SIGNING_KEYS=dev={jwt_key}\n"
    )


def write(path: Path, data_dir: Path) -> bool:
    """Write ``path`` unless it exists; True when written."""
    if path.exists():
        return False
    content = render(data_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it holds secrets
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    return True


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=ROOT / ".env")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".data")
    args = parser.parse_args(argv)
    if write(args.path, args.data_dir.resolve()):
        print(f"wrote {args.path} (development settings with fresh secrets)")


if __name__ == "__main__":
    main(sys.argv[1:])
