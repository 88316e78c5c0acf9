"""MCP tool calls against a flaky provider: ~30 % of provider calls answered 429/500/503 and
~15 % of the other streams broken, an agent allowed six attempts. At least 28 of 30 calls over
MCP complete with the agent's answer (a run fails only after six faults in a row: 0.44 %, so
three failures in 30 has a chance of about 1 in 3000); any that does not is an ``isError``
result naming the failure, never a protocol error or a hung call."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from django_tenants.utils import schema_context

from agents.models import Execution
from agents.providers.base import RETRYABLE_KINDS
from tests.agents.conftest import make_agent, make_credential
from tests.engine.test_resilience import CHAOS as ENGINE_CHAOS
from tests.mcp.conftest import mcp_client

CALLS = 30
CHAOS = {**ENGINE_CHAOS, "seed": 11}


def test_mcp_calls_ride_out_a_flaky_provider(
    live_server_url, committed_personas, fake_llm, settings
):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    alpha = committed_personas["alpha"]
    key = f"sk-chaos-{uuid.uuid4().hex}"
    with httpx.Client(base_url=fake_llm.url, timeout=5) as control:
        assert control.post("/_control/chaos", json={"key": key, **CHAOS}).status_code == 200
    with schema_context(alpha.schema):
        credential = make_credential(kind="openai", base_url=f"{fake_llm.url}/v1", api_key=key)
        agent = make_agent(
            credential,
            alpha.schema,
            retry_max_attempts=6,
            retry_backoff_seconds=0.01,
            retry_on_errors=sorted(RETRYABLE_KINDS),
        )

    async def main() -> list[Any]:
        async with mcp_client(live_server_url.url, alpha.user_key, mode="2026-07-28") as client:
            gate = asyncio.Semaphore(10)

            async def one(i: int) -> Any:
                async with gate:
                    return await client.call_tool(agent.slug, {"message": f"call {i}"})

            return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(CALLS))), 120)

    results = asyncio.run(main())
    completed = [r for r in results if not r.is_error]
    assert len(completed) >= CALLS - 2, [r.content[0].text for r in results if r.is_error]
    assert all(r.content[0].text for r in completed)
    assert all("The agent failed" in r.content[0].text for r in results if r.is_error)
    with schema_context(alpha.schema):
        statuses = list(Execution.objects.values_list("status", flat=True))
    assert len(statuses) == CALLS and statuses.count("completed") == len(completed)
    # The faults really were there: retries happened, at about the rates asked for.
    with httpx.Client(base_url=fake_llm.url, timeout=5) as control:
        injected = control.get("/_control/chaos", params={"key": key}).json()["injected"]
    calls = len(fake_llm.requests(key))
    faults = sum(n for name, n in injected.items() if name != "ok")
    assert calls > CALLS and faults >= 0.2 * calls, (calls, injected)
