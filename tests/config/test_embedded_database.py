"""The embedded PostgreSQL (pgserver) that a machine with no database falls back to."""

from __future__ import annotations

import importlib.util

import psycopg
import pytest

from config.database import _embedded

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pgserver") is None,
    reason="pgserver has wheels for CPython 3.9-3.12 on x86-64 only; this machine cannot use it",
)


def test_embedded_server_starts_and_serves_a_database(tmp_path):
    settings = _embedded(tmp_path / "pg", "embedded_probe")
    assert settings["HOST"].startswith("/") and settings["NAME"] == "embedded_probe"
    with psycopg.connect(host=settings["HOST"], user="postgres", dbname="embedded_probe") as conn:
        conn.execute("CREATE SCHEMA t_probe")  # schemas are what tenancy needs
        assert conn.execute("SHOW server_version").fetchone()[0].startswith("16")
    # A second resolution reuses the running server and the existing database.
    assert _embedded(tmp_path / "pg", "embedded_probe") == settings
