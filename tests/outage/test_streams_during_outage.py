"""Open streams through a database outage longer than they wait out: SSE and WebSocket
followers end with a retryable error (not a hang, not a silent end), and resuming after the
outage from the last event seen (``Last-Event-ID``, ``subscribe{after}``) loses nothing and
repeats nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from asgiref.sync import async_to_sync
from websockets.asyncio.client import connect

from tests.outage.conftest import OutageSite, web_process
from tests.outage.test_runs_during_outage import WORDS
from tests.outage.test_worker_outage import (
    STALLED_AFTER_SECONDS,
    accept_background,
    execution,
    wait_terminal,
)

PATIENCE = "1"  # seconds a stream rides out the outage before it ends (default 10)


def _sse(lines: list[str]) -> list[tuple[int | None, str, str]]:
    """(id, event, data) of each complete SSE event in ``lines``."""
    events: list[tuple[int | None, str, str]] = []
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if fields:
                seq = fields.get("id")
                events.append(
                    (int(seq) if seq else None, fields.get("event", ""), fields.get("data", ""))
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    return events


def test_streams_end_with_a_retryable_error_and_resume_without_loss(
    outage_site: OutageSite, live_worker: Any, fake_llm: Any, tmp_path: Path
) -> None:
    worker = live_worker(WORKER_STALLED_AFTER_SECONDS=STALLED_AFTER_SECONDS)
    answer = " ".join(f"w{i}" for i in range(WORDS))
    fake_llm.script(outage_site.llm_key, {"reply": answer, "chunks": WORDS, "chunk_delay": 0.25})
    headers = {"Authorization": f"Bearer {outage_site.user_key}"}
    with web_process(outage_site, tmp_path / "web.log", STREAM_DB_PATIENCE_SECONDS=PATIENCE) as web:
        with httpx.Client(base_url=web.url, timeout=30) as client:
            execution_id = accept_background(client, outage_site, "through the outage")
        attach = f"/agents/{outage_site.agent_id}/executions/{execution_id}/stream"
        ws_url = f"ws://127.0.0.1:{web.url.rsplit(':', 1)[1]}/agents/ws"

        async def first_part() -> tuple[list[str], list[dict[str, Any]]]:
            sse_lines: list[str] = []
            ws_messages: list[dict[str, Any]] = []
            async with (
                httpx.AsyncClient(base_url=web.url, timeout=60) as client,
                connect(ws_url, additional_headers=headers) as ws,
            ):
                assert json.loads(await ws.recv())["type"] == "auth_success"
                await ws.send(json.dumps({"type": "subscribe", "execution_id": execution_id}))
                async with client.stream("GET", attach, headers=headers) as stream:
                    lines = stream.aiter_lines()
                    async for line in lines:  # until some text has arrived
                        sse_lines.append(line)
                        if sum(x == "event: chunk" for x in sse_lines) >= 3:
                            break
                    await asyncio.to_thread(outage_site.cluster.stop)
                    async for line in lines:  # the stream must end by itself
                        sse_lines.append(line)
                async with asyncio.timeout(30):
                    while True:
                        message = json.loads(await ws.recv())
                        ws_messages.append(message)
                        if message.get("code") == "stream_interrupted":
                            break
            await asyncio.to_thread(outage_site.cluster.start)
            return sse_lines, ws_messages

        sse_lines, ws_messages = async_to_sync(first_part)()
        assert worker.alive()

        # SSE: an error event without an id, retryable, and no [DONE]: the client reconnects.
        before = _sse(sse_lines)
        interrupted = before[-1]
        assert interrupted[0] is None and interrupted[1] == "error", before[-3:]
        assert json.loads(interrupted[2])["retryable"] is True
        assert "data: [DONE]" not in sse_lines
        last_id = max(seq for seq, _, _ in before if seq is not None)
        # WebSocket: the same, as a message saying to subscribe again.
        assert ws_messages[-1]["retryable"] is True and "seq" not in ws_messages[-1]
        last_seq = max(m["seq"] for m in ws_messages if "seq" in m)

        with httpx.Client(base_url=web.url, timeout=60) as client:
            wait_terminal(client, outage_site, execution_id, 60)
            rest = client.get(attach, headers={**headers, "Last-Event-ID": str(last_id)})
            done = execution(client, outage_site, execution_id)
        after = _sse(rest.text.split("\n"))
        ids = [seq for seq, _, _ in before + after if seq is not None]
        assert ids == list(range(1, len(ids) + 1)), ids  # nothing lost, nothing twice
        text = "".join(data for _, event, data in before + after if event == "chunk")
        assert text.replace("\n", "") == answer.replace("\n", "")
        assert after[-1][2] == "[DONE]" and done["status"] == "completed"

        async def resume_websocket() -> list[dict[str, Any]]:
            async with connect(ws_url, additional_headers=headers) as ws:
                assert json.loads(await ws.recv())["type"] == "auth_success"
                await ws.send(
                    json.dumps(
                        {"type": "subscribe", "execution_id": execution_id, "after": last_seq}
                    )
                )
                received: list[dict[str, Any]] = []
                async with asyncio.timeout(30):
                    while not received or received[-1]["type"] != "complete":
                        received.append(json.loads(await ws.recv()))
                return received

        resumed = async_to_sync(resume_websocket)()
        seqs = [m["seq"] for m in ws_messages + resumed if "seq" in m]
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        assert resumed[-1]["response"] == answer
