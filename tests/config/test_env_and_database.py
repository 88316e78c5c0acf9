from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.database import parse_database_url
from config.env import env_bool, env_int, env_list, env_secret


def test_typed_readers_parse_and_fail_loudly(monkeypatch):
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_INT", "42")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert (
        env_bool("X_BOOL") is True
        and env_int("X_INT", 1) == 42
        and env_list("X_LIST") == ["a", "b", "c"]
    )
    monkeypatch.setenv("X_BOOL", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_BOOL"):
        env_bool("X_BOOL")
    monkeypatch.setenv("X_INT", "-1")
    with pytest.raises(ImproperlyConfigured, match="X_INT"):
        env_int("X_INT", 1, minimum=0)


def test_secrets_have_no_default_outside_debug(monkeypatch):
    monkeypatch.delenv("X_SECRET", raising=False)
    with pytest.raises(ImproperlyConfigured, match="X_SECRET"):
        env_secret("X_SECRET", debug=False, debug_default="dev")
    assert env_secret("X_SECRET", debug=True, debug_default="dev") == "dev"


def test_database_url_parsing():
    parsed = parse_database_url("postgres://u:p%40ss@db.internal:6543/agents?sslmode=require")
    assert parsed["NAME"] == "agents" and parsed["PASSWORD"] == "p@ss" and parsed["PORT"] == "6543"
    assert parsed["OPTIONS"] == {"sslmode": "require"}
    socket = parse_database_url("postgres://postgres@/agents?host=/tmp/pg")
    assert socket["HOST"] == "/tmp/pg"
    with pytest.raises(ImproperlyConfigured, match="postgres"):
        parse_database_url("sqlite:///db.sqlite3")
