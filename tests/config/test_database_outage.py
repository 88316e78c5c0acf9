"""While the database is unreachable, every kind of view answers 503 ``database_unavailable``
with ``Retry-After`` in the platform's error shape, never a 500.

The outage is simulated by making queries fail the way they do when PostgreSQL restarts under
the app; ``tests/outage`` does the same against a real server that is stopped and started.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.db import IntegrityError, OperationalError
from django.db.backends.utils import CursorWrapper
from django.test import AsyncClient, Client
from procrastinate.exceptions import ConnectorException

from config.database import OutageLog, database_unavailable


@pytest.fixture
def database_down() -> Iterator[Callable[..., None]]:
    """Make queries fail (all, or those whose SQL mentions ``only``) as after a restart.
    Undone at this fixture's teardown, before the test database's own (ask for it last)."""
    monkeypatch = pytest.MonkeyPatch()

    def arm(only: str | None = None) -> None:
        real = CursorWrapper._execute

        def failing(self: CursorWrapper, sql: str, params: Any, *rest: Any) -> Any:
            if only is None or only in sql:
                raise OperationalError("terminating connection due to administrator command")
            return real(self, sql, params, *rest)

        monkeypatch.setattr(CursorWrapper, "_execute", failing)

    yield arm
    monkeypatch.undo()


def assert_database_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.content[:300]
    assert response["Retry-After"] == "5"
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert body["error"]["code"] == "database_unavailable"
    assert body["error"]["message"] and body["error"]["details"] == {"retry_after_seconds": 5}
    assert body["request_id"] == response["X-Request-ID"]


def test_tenant_resolution_without_a_database_is_503_not_500(alpha, database_down):
    # The tenant middleware reads the API key before any view runs.
    database_down()
    client = Client(raise_request_exception=False)
    response = client.get("/agents", HTTP_AUTHORIZATION=f"Bearer {alpha.user_key}")
    assert_database_unavailable(response)


def test_a_drf_view_without_a_database_is_503(alpha, database_down):
    database_down(only='"agents_agent"')
    client = Client(raise_request_exception=False)
    response = client.get("/agents", HTTP_AUTHORIZATION=f"Bearer {alpha.user_key}")
    assert_database_unavailable(response)


def test_a_plain_django_view_without_a_database_is_503(alpha, database_down):
    # The tenant admin looks the session up while the view runs.
    database_down(only='"django_session"')
    client = Client(raise_request_exception=False)
    client.cookies["sessionid"] = "x" * 32
    response = client.get("/admin/", HTTP_HOST=alpha.host)
    assert_database_unavailable(response)


async def test_an_async_sse_view_without_a_database_is_503(alpha, database_down):
    database_down(only='"agents_agent"')
    client = AsyncClient(raise_request_exception=False)
    response = await client.post(
        "/agents/some-agent/execute/stream",
        {"input": {"message": "hi"}},
        content_type="application/json",
        headers={"Authorization": f"Bearer {alpha.user_key}"},
    )
    assert_database_unavailable(response)


def test_other_database_errors_are_not_mistaken_for_an_outage():
    assert database_unavailable(OperationalError("the connection is lost"))
    assert database_unavailable(psycopg.OperationalError("connection refused"))
    assert database_unavailable(psycopg.InterfaceError("the connection is closed"))
    wrapped = ConnectorException()
    wrapped.__cause__ = psycopg.errors.AdminShutdown("terminating connection")
    assert database_unavailable(wrapped)  # procrastinate's wrapping of psycopg's error
    assert not database_unavailable(IntegrityError("duplicate key"))
    assert not database_unavailable(psycopg.errors.UniqueViolation("duplicate key"))
    assert not database_unavailable(ValueError("bad input"))


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(caplog):
    log = OutageLog(logging.getLogger("tests.outage"), "probe")
    with caplog.at_level(logging.WARNING, logger="tests.outage"):
        assert log.failed(OperationalError("down")) is True
        assert log.failed(OperationalError("still down")) is False
        assert log.failed(OperationalError("still down")) is False
        lasted = log.recovered()
        assert lasted is not None and lasted >= 0
        assert log.recovered() is None
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert "unreachable" in messages[0] and "reachable again" in messages[1]
