"""The admin's "test run": runs an agent and streams its events to the operator's browser.

An async view (``StreamingHttpResponse`` over an async generator streams event by event under
daphne). It authenticates the staff session itself, runs the execution like any other client
would (stored, audited by its principal), and cancels the run if the browser goes away.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST

from agents.services.executions import ExecutionRequest, execution_run
from config.errors import DomainError
from config.middleware import request_id_for

logger = logging.getLogger(__name__)

_DONE = object()


@csrf_protect
@require_POST
async def test_run_stream(request: HttpRequest, object_id: str) -> HttpResponse:
    user = await request.auser()
    tenant = getattr(request, "tenant", None)
    if tenant is None or not (user.is_active and user.is_staff):
        return JsonResponse(
            {"error": {"code": "permission_denied", "message": "Staff only.", "details": {}}},
            status=403,
        )
    message = request.POST.get("message", "")
    try:
        context = json.loads(request.POST.get("context") or "{}")
    except json.JSONDecodeError:
        return JsonResponse(
            {
                "error": {
                    "code": "validation_error",
                    "message": "context: not valid JSON",
                    "details": {},
                }
            },
            status=400,
        )
    if not isinstance(context, dict):
        return JsonResponse(
            {
                "error": {
                    "code": "validation_error",
                    "message": "context: must be an object",
                    "details": {},
                }
            },
            status=400,
        )
    run_request = ExecutionRequest(
        agent_ref=object_id,
        context=context,
        message=message,
        principal=f"user:{user.get_username()}",
        request_id=request_id_for(request),
    )
    return StreamingHttpResponse(
        _events(tenant.schema_name, run_request),
        content_type="application/x-ndjson",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(schema_name: str, run_request: ExecutionRequest) -> AsyncIterator[str]:
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def listener(event: dict[str, Any]) -> None:
        await queue.put(event)

    async def run() -> None:
        try:
            execution = await execution_run(
                schema_name=schema_name, request=run_request, listener=listener
            )
            await queue.put(
                {"type": "stored", "execution_id": execution.id, "status": execution.status}
            )
        except DomainError as exc:
            await queue.put({"type": "error", "code": exc.code, "message": exc.message})
        except Exception:
            # Without this the stream just ends, and the operator sees an empty answer.
            logger.exception("admin test run failed")
            await queue.put(
                {"type": "error", "code": "server_error", "message": "The run failed unexpectedly."}
            )
        finally:
            await queue.put(_DONE)

    task = asyncio.create_task(run())
    try:
        while (item := await queue.get()) is not _DONE:
            yield json.dumps(item, default=str) + "\n"
    finally:
        if not task.done():
            task.cancel()  # the browser went away: stop the upstream call too
