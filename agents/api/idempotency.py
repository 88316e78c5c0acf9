"""The ``Idempotency-Key`` header on execution creation (sync DRF views).

Contract (also in docs): keys are scoped to the tenant and the caller's credential (a token
shares its API key's scope); the first response to a key is stored, errors included, and
replayed with ``Idempotent-Replayed: true``; the same key with another body or path is a 409
``idempotency_key_reused``. A repeat that arrives while the first request is still running
waits for it (up to ``IDEMPOTENCY_WAIT_SECONDS``, default 10) and replays its response; after
that it gets 409 ``idempotency_in_progress`` with ``Retry-After``. Either way one execution and
one upstream call happen. Unexpected server errors (500) are not stored: the key is released
so that a retry can run.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.request import Request
from rest_framework.response import Response

from agents.models import Execution, IdempotencyRecord, IdempotencyState
from agents.services.idempotency import (
    idempotency_claim,
    idempotency_complete,
    idempotency_get,
    idempotency_release,
    request_fingerprint,
)
from config.errors import ValidationFailed, api_exception_handler, error_body
from tenants.context import in_schema
from tenants.principals import Principal

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Headers worth replaying; timing headers describe the first request only.
KEPT_HEADERS = ("Location",)
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
POLL_SECONDS = 0.1


def principal_scope(principal: Principal) -> str:
    # A token minted from an API key acts for that key: both share its idempotency keys.
    if principal.api_key_id:
        return f"api_key:{principal.api_key_id}"
    return principal.audit_actor


def idempotency_key_of(request: Request | HttpRequest) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    key = key.strip()
    if not _KEY_RE.match(key):
        raise ValidationFailed(
            f"{HEADER}: 1 to 255 visible ASCII characters",
            details={HEADER: ["1 to 255 visible ASCII characters"]},
        )
    return key


def _wait_for(record: IdempotencyRecord) -> IdempotencyRecord:
    deadline = time.monotonic() + float(getattr(settings, "IDEMPOTENCY_WAIT_SECONDS", 10.0))
    while record.state != IdempotencyState.COMPLETED and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        fresh = idempotency_get(record.pk)
        if fresh is None:  # released by a failed owner: the caller may retry
            break
        record = fresh
    return record


def replay(record: IdempotencyRecord) -> Response:
    headers = dict(record.response_headers or {})
    headers[REPLAYED_HEADER] = "true"
    return Response(record.response_body, status=record.status_code or 200, headers=headers)


def run_idempotent(
    request: Request,
    *,
    principal: Principal,
    body: Any,
    view: Any,
    produce: Callable[[], Response],
) -> Response:
    """Answer with ``produce()`` once per key; replay its stored response afterwards."""
    key = idempotency_key_of(request)
    if key is None:
        return produce()
    scope = principal_scope(principal)
    claim = idempotency_claim(
        scope=scope,
        key=key,
        fingerprint=request_fingerprint(
            method=request.method or "", path=request.path, body=body, scope=scope
        ),
        method=request.method or "",
        path=request.path,
    )
    if not claim.owned:
        record = _wait_for(claim.record)
        if record.state == IdempotencyState.COMPLETED:
            return replay(record)
        refusal = _in_progress(request._request)
        return Response(json.loads(refusal.content), status=409, headers={"Retry-After": "1"})
    try:
        response = produce()
    except Exception as exc:
        handled = api_exception_handler(exc, {"request": request, "view": view})
        if handled is None or handled.status_code >= 500:
            idempotency_release(record=claim.record)
            raise
        response = handled
    idempotency_complete(
        record=claim.record,
        status_code=response.status_code,
        body=response.data,
        headers={name: response[name] for name in KEPT_HEADERS if response.has_header(name)},
        execution_id=str((response.data or {}).get("execution_id") or "")
        if isinstance(response.data, dict)
        else "",
    )
    return response


# ---- the streaming endpoint (async view) ----


@dataclass(frozen=True)
class StreamClaim:
    """What an ``Idempotency-Key`` on ``execute/stream`` decided.

    ``record``: this request owns the key and must call :func:`complete_for_stream`.
    ``response``: answer with this (a stored error, or 409 in progress).
    ``execution_id`` / ``location``: the key already started this execution: replay its stream
    from the beginning (the stored log is the response).
    """

    record: IdempotencyRecord | None = None
    response: HttpResponse | None = None
    execution_id: str | None = None
    location: str = ""


async def claim_for_stream(request: HttpRequest, principal: Principal, body: Any) -> StreamClaim:
    key = idempotency_key_of(request)
    if key is None:
        return StreamClaim()
    schema = principal.schema_name
    scope = principal_scope(principal)
    claim = await in_schema(
        schema,
        idempotency_claim,
        scope=scope,
        key=key,
        fingerprint=request_fingerprint(
            method=request.method or "", path=request.path, body=body, scope=scope
        ),
        method=request.method or "",
        path=request.path,
    )
    if claim.owned:
        return StreamClaim(record=claim.record)
    record: IdempotencyRecord | None = claim.record
    deadline = time.monotonic() + float(getattr(settings, "IDEMPOTENCY_WAIT_SECONDS", 10.0))
    while record is not None and record.state != IdempotencyState.COMPLETED:
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
        record = await in_schema(schema, idempotency_get, record.pk)
    if record is None or record.state != IdempotencyState.COMPLETED:
        return StreamClaim(response=_in_progress(request))
    if record.status_code == 200 and record.execution_id:
        return StreamClaim(
            execution_id=record.execution_id,
            location=str((record.response_headers or {}).get("Location", "")),
        )
    headers = {**(record.response_headers or {}), REPLAYED_HEADER: "true"}
    response = JsonResponse(record.response_body, status=record.status_code or 200, safe=False)
    for name, value in headers.items():
        response[name] = value
    return StreamClaim(response=response)


async def complete_for_stream(
    schema: str,
    record: IdempotencyRecord | None,
    *,
    response: HttpResponse | None = None,
    execution: Execution | None = None,
    location: str = "",
) -> None:
    """Store what the key produced: the error response, or the execution whose stream it is."""
    if record is None:
        return
    if execution is not None:
        body: Any = {"execution_id": execution.id, "agent_id": execution.agent_id}
        await in_schema(
            schema,
            idempotency_complete,
            record=record,
            status_code=200,
            body=body,
            headers={"Location": location},
            execution_id=execution.id,
        )
    elif response is not None and response.status_code < 500:
        await in_schema(
            schema,
            idempotency_complete,
            record=record,
            status_code=response.status_code,
            body=json.loads(response.content or b"null"),
            headers={},
        )
    else:
        await in_schema(schema, idempotency_release, record=record)


def _in_progress(request: HttpRequest) -> JsonResponse:
    response = JsonResponse(
        error_body(
            request,
            "idempotency_in_progress",
            "A request with this Idempotency-Key is still being processed; retry later.",
        ),
        status=409,
    )
    response["Retry-After"] = "1"
    return response
