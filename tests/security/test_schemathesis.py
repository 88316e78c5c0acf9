"""Schemathesis against the live OpenAPI document, with two tenants' credentials.

A real server serves ``config.asgi``; the schema comes from its ``/api/schema/``. Every
operation is then called:

1. as alpha's admin, with generated inputs: no 5xx, the status code is one the document names,
   the content type and the body match the document. Path parameters are alpha's real ids
   (an estate of one object of every kind) for every method but DELETE, so that 200 bodies are
   checked, not just 404s; DELETE keeps generated ids (the estate must survive the run).
2. as bravo's admin, with alpha's ids in every path parameter and every query parameter
   named like one: 404 on each operation that addresses an object (or, where input is
   checked first, exactly the answer the same request gets for an id that exists nowhere),
   and no alpha id or name in any answer.

Bounds (2 slow cores, one process beside the server): ``MAX_EXAMPLES`` = 12 generated cases
per operation as alpha, ``CROSS_EXAMPLES`` = 3 as bravo, ``derandomize=True`` (the same cases
every run), no shrinking and no example database, one HTTP timeout of 10 s per request. The
SSE operations take part with generated ids only (an attach to a live run waits for its end).
The whole module runs in about 35 s here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import httpx
import requests
import schemathesis
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agents.models import ModelPrice
from tests.security.conftest import Estate

MAX_EXAMPLES = 12
CROSS_EXAMPLES = 3
TIMEOUT = 10
SHOWN = int(os.environ.get("SCHEMATHESIS_SHOWN", "300"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SSE_OPERATIONS = {
    "POST /agents/{agent_id}/execute/stream",
    "GET /agents/{agent_id}/executions/{execution_id}/stream",
}
# Path parameters whose name differs from the estate's key for it.
PATH_ALIASES = {
    ("/workflows/{workflow_id}/activity-agents/{binding_id}", "binding_id"): "activity_binding_id",
}


def _hypothesis(max_examples: int) -> Callable[[Any], Any]:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def _operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{url}/api/schema/?format=json", timeout=TIMEOUT)
    operations = []
    for result in schema.get_all_operations():
        operations.append(result.ok())  # an Err would be a broken document: let it raise
    assert len(operations) > 60, [op.label for op in operations]
    return operations


def _estate_id(estate: Estate, path: str, name: str) -> str | None:
    return estate.ids.get(PATH_ALIASES.get((path, name), name))


def _failure(error: BaseException) -> str:
    """The failing checks' first lines (schemathesis groups several failures of one case)."""
    inner = getattr(error, "exceptions", None) or [error]
    return " | ".join(f"{type(e).__name__}: {str(e).strip()[:SHOWN]}" for e in inner)


def _code(response: Any) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def test_every_operation_as_alpha_admin_matches_the_document(
    live_server_url: Any, make_estate: Callable[[str], Estate]
) -> None:
    estate = make_estate("alpha")
    headers = {"Authorization": f"Bearer {estate.persona.admin_key}"}
    failures: dict[str, str] = {}
    session = requests.Session()
    for operation in _operations(live_server_url.url):
        use_estate = operation.method.upper() != "DELETE" and operation.label not in SSE_OPERATIONS

        @given(case=operation.as_strategy())
        @_hypothesis(MAX_EXAMPLES)
        def call(case: Any) -> None:
            if use_estate:
                for name in list(case.path_parameters or {}):
                    real = _estate_id(estate, operation.path, name)
                    if real is not None:
                        case.path_parameters[name] = real
            case.call_and_validate(
                base_url=live_server_url.url,
                session=session,
                headers=headers,
                checks=CHECKS,
                timeout=TIMEOUT,
            )

        try:
            call()
        except (Exception, BaseExceptionGroup) as error:  # schemathesis groups failures
            failures[operation.label] = _failure(error)
    assert not failures, json.dumps(failures, indent=1)
    # The admin's own key still works: no generated call revoked it or broke the tenant.
    whoami = httpx.get(f"{live_server_url.url}/auth/whoami", headers=headers, timeout=TIMEOUT)
    assert whoami.status_code == 200 and whoami.json()["tenant"] == "alpha"


def test_bravo_never_reads_or_changes_alphas_objects(
    live_server_url: Any, make_estate: Callable[[str], Estate]
) -> None:
    alpha = make_estate("alpha")
    bravo = make_estate("bravo")
    bravo_key = bravo.persona.admin_key
    # Model prices have per-schema integer ids: bravo's own price may carry alpha's number.
    with schema_context(bravo.persona.schema):
        ModelPrice.objects.filter(pk=int(alpha.ids["price_id"])).delete()
    headers = {"Authorization": f"Bearer {bravo_key}"}
    problems: dict[str, str] = {}
    session = requests.Session()
    for operation in _operations(live_server_url.url):
        path_names = [p.name for p in operation.path_parameters]
        query_names = [p.name for p in operation.query]
        aimed = [n for n in path_names if _estate_id(alpha, operation.path, n)]
        filters = [n for n in query_names if n in alpha.ids]
        if not aimed and not filters:
            continue
        if operation.label in SSE_OPERATIONS and operation.method.upper() == "GET":
            continue  # the cross-tenant stream attach is asserted below, with a deadline

        @given(case=operation.as_strategy())
        @_hypothesis(CROSS_EXAMPLES)
        def call(case: Any) -> None:
            for name in path_names:
                real = _estate_id(alpha, operation.path, name)
                if real is not None:
                    case.path_parameters[name] = real
            for name in filters:
                case.query = {**(case.query or {}), name: alpha.ids[name]}
            response = case.call(
                base_url=live_server_url.url, session=session, headers=headers, timeout=TIMEOUT
            )
            text = response.text
            if aimed and response.status_code != 404:
                # Input checked before the lookup: fine if an id that exists nowhere gets the
                # same answer (nothing tells bravo that alpha's object exists).
                for name in aimed:
                    case.path_parameters[name] = "nowhere-0"
                nowhere = case.call(
                    base_url=live_server_url.url, session=session, headers=headers, timeout=TIMEOUT
                )
                assert (response.status_code, _code(response)) == (
                    nowhere.status_code,
                    _code(nowhere),
                ), (response.status_code, text[:300], nowhere.text[:300])
                assert response.status_code < 500, (response.status_code, text[:300])
            elif not aimed:
                assert response.status_code < 500, (response.status_code, text[:300])
            leaked = [mark for mark in alpha.marks if mark in text]
            assert not leaked, (leaked, text[:300])

        try:
            call()
        except (Exception, BaseExceptionGroup) as error:  # schemathesis groups failures
            problems[operation.label] = _failure(error)
    ids = alpha.ids
    with httpx.stream(
        "GET",
        f"{live_server_url.url}/agents/{ids['agent_id']}/executions/{ids['execution_id']}/stream",
        headers=headers,
        timeout=TIMEOUT,
    ) as attach:
        if attach.status_code != 404:
            problems["attach stream"] = str(attach.status_code)
    assert not problems, json.dumps(problems, indent=1)
    # Nothing bravo sent changed alpha's objects.
    admin = {"Authorization": f"Bearer {alpha.persona.admin_key}"}
    for path in (
        f"/agents/{ids['agent_id']}",
        f"/credentials/{ids['credential_id']}",
        f"/workflows/{ids['workflow_id']}",
        f"/mcp-servers/{ids['server_id']}",
        f"/model-prices/{ids['price_id']}",
        f"/api-keys/{ids['key_id']}",
    ):
        response = httpx.get(f"{live_server_url.url}{path}", headers=admin, timeout=TIMEOUT)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    agent = httpx.get(
        f"{live_server_url.url}/agents/{ids['agent_id']}", headers=admin, timeout=TIMEOUT
    ).json()
    assert agent["version"] == 1 and agent["enabled"] is True, agent
