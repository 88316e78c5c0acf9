"""``GET /v1/models`` and ``GET /v1/models/{model}``: what a caller may name as ``model``.

The tenant's enabled agents as ``agent:<slug>`` (its gateway agents excepted: they are how
model calls are stored, not something to call), then the models ``GET /models`` says the
tenant may call (its credentials' models), then the virtual models when a model can back them.
Models that only have a price, with no credential to call them through, are not listed: a
request naming one would be ``model_not_found``.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase

from agents.core.conversation import AGENT_PREFIX, GATEWAY_PREFIX, ModelNotFound
from agents.models import Agent
from agents.openai_compat.transport import caller, refusal, require_method
from agents.selectors import model_catalog
from tenants.context import in_schema
from tenants.roles import Permission


def _entry(model_id: str, created: int, owned_by: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


def model_entries(tenant: str) -> list[dict[str, Any]]:
    """Every model a caller of this tenant may name (sync, in the tenant's schema)."""
    entries: list[dict[str, Any]] = []
    agents = (
        Agent.objects.filter(enabled=True)
        .exclude(slug__startswith=GATEWAY_PREFIX)
        .only("slug", "created_at")
        .order_by("slug")
    )
    for agent in agents:
        entries.append(
            _entry(f"{AGENT_PREFIX}{agent.slug}", int(agent.created_at.timestamp()), tenant)
        )
    catalog = model_catalog()
    seen: set[str] = set()
    for model in catalog["models"]:
        if model["model"] not in seen:
            seen.add(model["model"])
            entries.append(_entry(model["model"], 0, str(model["provider"])))
    for virtual in catalog["virtual_models"]:
        if virtual["available"]:
            entries.append(_entry(virtual["model"], 0, "circuit-breaker-agents"))
    return entries


async def model_list(request: HttpRequest) -> HttpResponseBase:
    try:
        require_method(request, "GET")
        principal = await caller(request, Permission.AGENTS_READ)
        entries = await in_schema(principal.schema_name, model_entries, principal.tenant_slug)
    except Exception as exc:
        return refusal(request, exc)
    return JsonResponse({"object": "list", "data": entries})


async def model_detail(request: HttpRequest, model: str) -> HttpResponseBase:
    try:
        require_method(request, "GET")
        principal = await caller(request, Permission.AGENTS_READ)
        entries = await in_schema(principal.schema_name, model_entries, principal.tenant_slug)
        found = next((e for e in entries if e["id"] == model), None)
        if found is None:
            raise ModelNotFound(model)
    except Exception as exc:
        return refusal(request, exc)
    return JsonResponse(found)
