"""Reliability case 8: a mixed-tenant soak on one live server and one worker process.

Alpha and bravo each run ROUNDS rounds at the same time; every round is a blocking HTTP run,
an SSE run, a WebSocket run and a background run (queued, then run by the worker), plus list
and detail reads, all interleaved on one event loop against the one server. Then: each schema
holds exactly its own executions (its agent, its tenant id in the context, none of the other's
ids) and no answer to one tenant names the other's agent, slug or any of its executions.

Bounds: ROUNDS = 3 per tenant (24 runs), every wait has a deadline."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
from django_tenants.utils import schema_context
from websockets.asyncio.client import connect

from agents.models import Execution, ExecutionEvent
from tests.agents.conftest import make_agent, make_credential
from tests.conftest import Persona

ROUNDS = 3


async def _tenant_soak(url: str, port: int, persona: Persona, agent_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {persona.user_key}"}
    seen: list[str] = []
    ids: set[str] = set()
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as client:
        ws = await connect(f"ws://127.0.0.1:{port}/agents/ws", open_timeout=10)
        try:
            await ws.send(json.dumps({"type": "auth", "token": persona.user_key}))
            assert json.loads(await ws.recv())["type"] == "auth_success"
            for round_ in range(ROUNDS):
                message = {"input": {"message": f"{persona.slug} round {round_}"}}
                blocking = await client.post(f"/agents/{agent_id}/execute", json=message)
                assert blocking.status_code == 200, blocking.text
                seen.append(blocking.text)
                ids.add(blocking.json()["execution_id"])
                async with client.stream(
                    "POST", f"/agents/{agent_id}/execute/stream", json=message
                ) as stream:
                    assert stream.status_code == 200
                    text = "".join([chunk async for chunk in stream.aiter_text()])
                    seen.append(text)
                    ids.add(stream.headers["Location"].rstrip("/").split("/")[-2])
                await ws.send(
                    json.dumps(
                        {
                            "type": "execute",
                            "agent_id": agent_id,
                            "message": f"{persona.slug} ws {round_}",
                            "request_id": f"r{round_}",
                        }
                    )
                )
                async with asyncio.timeout(30):
                    while True:
                        frame = json.loads(await ws.recv())
                        seen.append(json.dumps(frame))
                        if frame["type"] == "execution_started":
                            ids.add(frame["execution_id"])
                        if frame["type"] in {"complete", "error"}:
                            assert frame["type"] == "complete", frame
                            break
                background = await client.post(
                    f"/agents/{agent_id}/execute",
                    json={**message, "execution_config": {"mode": "background"}},
                )
                assert background.status_code == 202, background.text
                ids.add(background.json()["execution_id"])
                seen.append((await client.get("/executions")).text)
                seen.append((await client.get(f"/agents/{agent_id}/executions")).text)
            deadline = time.monotonic() + 30
            while True:  # the worker's background runs end
                listed = (await client.get("/executions", params={"limit": 100})).json()
                statuses = {e["execution_id"]: e["status"] for e in listed["executions"]}
                if all(s in {"completed", "failed"} for s in statuses.values()):
                    break
                assert time.monotonic() < deadline, statuses
                await asyncio.sleep(0.2)
            seen.append(json.dumps(listed))
            for execution_id in ids:
                detail = await client.get(f"/executions/{execution_id}")
                assert detail.status_code == 200, detail.text
                seen.append(detail.text)
        finally:
            await ws.close()
    return {"seen": seen, "ids": ids, "statuses": statuses}


def _make(persona: Persona, fake_llm: Any) -> tuple[str, str]:
    key = f"sk-test-{uuid.uuid4().hex}"
    with schema_context(persona.schema):
        credential = make_credential(
            kind="openai", base_url=fake_llm.base_url("openai"), api_key=key
        )
        agent = make_agent(credential, persona.schema, slug=f"soak-{persona.slug}")
    return str(agent.id), agent.slug


def test_two_tenants_interleaved_on_one_server_and_worker_see_only_their_own(
    live_server_url, committed_personas, fake_llm, spawn_worker, clean_queue, settings
):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    personas = committed_personas
    agents = {slug: _make(personas[slug], fake_llm) for slug in ("alpha", "bravo")}
    spawn_worker()

    async def both() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(
                _tenant_soak(
                    live_server_url.url, live_server_url.port, personas[slug], agents[slug][0]
                )
                for slug in ("alpha", "bravo")
            )
        )

    results = dict(zip(("alpha", "bravo"), asyncio.run(both()), strict=True))
    for slug, other in (("alpha", "bravo"), ("bravo", "alpha")):
        mine, theirs = results[slug], results[other]
        assert len(mine["ids"]) == 4 * ROUNDS, mine["ids"]
        assert set(mine["statuses"].values()) == {"completed"}, mine["statuses"]
        with schema_context(personas[slug].schema):
            stored = list(Execution.objects.values("id", "agent_id", "context"))
            foreign_events = ExecutionEvent.objects.filter(execution_id__in=theirs["ids"]).count()
        assert {row["id"] for row in stored} == mine["ids"]
        assert {row["agent_id"] for row in stored} == {agents[slug][0]}
        assert {row["context"]["tenant_id"] for row in stored} == {personas[slug].schema}
        assert foreign_events == 0
        text = "\n".join(mine["seen"])
        leaked = [value for value in (*agents[other], *theirs["ids"]) if value in text]
        assert not leaked, (slug, leaked)
