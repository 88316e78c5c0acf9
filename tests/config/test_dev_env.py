"""Development settings reach every documented command of a checkout: ``make install`` and
``make run`` write ``.env`` (``platform/dev_env.py``), ``manage.py`` reads it, the tests never."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

import manage
from tests.conftest import ROOT

DEV_ENV = ROOT / "platform" / "dev_env.py"
SECRETS = ("SECRET_KEY", "API_KEY_HMAC_SECRET", "FIELD_ENCRYPTION_KEYS", "JWT_SIGNING_KEYS")


def _write(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    subprocess.run(
        [sys.executable, str(DEV_ENV), "--path", str(path), "--data-dir", str(tmp_path / "data")],
        check=True,
        capture_output=True,
    )
    return path


def _values(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name: value for name, value in pairs if not name.startswith("#")}


def test_make_install_writes_fresh_development_secrets_once(tmp_path):
    path = _write(tmp_path)
    values = _values(path)
    assert values["DEBUG"] == "1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(values["SECRET_KEY"]) >= 50 and len(values["API_KEY_HMAC_SECRET"]) >= 50
    assert values["SECRET_KEY"] != values["API_KEY_HMAC_SECRET"]
    ring = dict(item.split("=", 1) for item in values["FIELD_ENCRYPTION_KEYS"].split(","))
    Fernet(ring["local"])  # a valid key, first in the ring: it seals
    # The built-in DEBUG key stays in the ring: what a checkout sealed before still opens.
    builtin = re.search(r'debug_default="(dev=[^"]+)"', (ROOT / "config/settings.py").read_text())
    assert builtin and values["FIELD_ENCRYPTION_KEYS"].endswith(f",{builtin.group(1)}")
    kid, key_file = values["JWT_SIGNING_KEYS"].split("=", 1)
    assert kid == "dev" and Path(key_file).is_file()
    assert stat.S_IMODE(Path(key_file).stat().st_mode) == 0o600

    # Never overwritten: the secrets of a checkout stay what they were.
    before = path.read_text()
    _write(tmp_path)
    assert path.read_text() == before
    # Another checkout gets secrets of its own.
    (tmp_path / "other").mkdir()
    assert _values(_write(tmp_path / "other"))["SECRET_KEY"] != values["SECRET_KEY"]


def test_manage_reads_only_what_the_environment_lacks(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    path.write_text("# comment\nDEBUG=1\nexport CBA_PROBE_A='from file'\nCBA_PROBE_B=from file\n")
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    monkeypatch.delenv("CBA_ENV", raising=False)
    monkeypatch.delenv("CBA_PROBE_A", raising=False)
    monkeypatch.setenv("CBA_PROBE_B", "from environment")
    monkeypatch.setenv("DEBUG", "0")
    assert manage.load_dev_env(path) == ["CBA_PROBE_A"]
    assert os.environ["CBA_PROBE_A"] == "from file"
    assert os.environ["CBA_PROBE_B"] == "from environment" and os.environ["DEBUG"] == "0"


@pytest.mark.parametrize(
    "variable, value",
    [("CBA_ENV", "production"), ("DJANGO_SETTINGS_MODULE", "config.test_settings")],
)
def test_manage_ignores_the_file_in_production_and_under_the_test_settings(
    tmp_path, monkeypatch, variable, value
):
    path = tmp_path / ".env"
    path.write_text("CBA_PROBE_C=1\n")
    monkeypatch.delenv("CBA_PROBE_C", raising=False)
    monkeypatch.delenv("CBA_ENV", raising=False)
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    monkeypatch.setenv(variable, value)
    assert manage.load_dev_env(path) == []
    assert "CBA_PROBE_C" not in os.environ


def test_documented_commands_run_with_the_development_settings(tmp_path):
    """What failed after `make run`: a manage.py command in a fresh shell ("SECRET_KEY must be
    set when DEBUG is off")."""
    path = _write(tmp_path)
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {*SECRETS, "DEBUG", "DJANGO_SETTINGS_MODULE", "CBA_ENV", "ALLOWED_HOSTS"}
    }
    # No database is reached to print settings; the URL only skips the local-server probe.
    env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/cba_unused"
    probe = "from django.conf import settings; print(settings.DEBUG, len(settings.SECRET_KEY))"
    script = (
        "import sys; from pathlib import Path; import manage; "
        f"manage.DEV_ENV_FILE = Path({str(path)!r}); "
        f"sys.argv = ['manage.py', 'shell', '-c', {probe!r}]; manage.main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["True", str(len(_values(path)["SECRET_KEY"]))]
