"""Settings for the test suite: production settings with test-only secrets filled in.

Nothing here changes behaviour; it only supplies the secrets that production requires from the
environment, so that the tests run with DEBUG off, like production.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_keydir = Path(tempfile.gettempdir()) / "cba-test-jwt"
_keydir.mkdir(exist_ok=True)

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("API_KEY_HMAC_SECRET", "test-api-key-hmac-secret")
os.environ.setdefault("ALLOWED_HOSTS", ".localhost,localhost,127.0.0.1,testserver")
os.environ.setdefault("SECURE_COOKIES", "0")
# Two field keys: "test-new" seals, "test-old" still opens (rotation is tested).
os.environ.setdefault(
    "FIELD_ENCRYPTION_KEYS",
    "test-new=dGVzdC1uZXctZmllbGQta2V5LTMyLWJ5dGVzLWxvbmc=,test-old=dGVzdC1vbGQtZmllbGQta2V5LTMyLWJ5dGVzLWxvbmc=",
)
if "JWT_SIGNING_KEYS" not in os.environ:
    from tenants.signing import generate_key_file

    current = generate_key_file(_keydir / "test-current.pem")
    previous = generate_key_file(_keydir / "test-previous.pem")
    os.environ["JWT_SIGNING_KEYS"] = f"test-current={current},test-previous={previous}"

from config.settings import *  # noqa: E402,F403
