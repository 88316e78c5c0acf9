"""Several web processes on one port (granian ``--workers 2``, as ``WEB_WORKERS=2`` runs it):
each has its own LISTEN hub, and nothing a client does may depend on which process a
connection lands on. A run streamed from one connection is cancelled from fresh connections
(either process) and its stream ends ``cancelled``; it resumes from any process; the other
tenant sees none of it."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import auth, sse_events
from tests.conftest import live_server

ROUNDS = 6  # a cancel lands on the run's own process with p = 1/2 each time


@pytest.mark.parametrize("server", ["granian:2"])
def test_two_web_processes_behind_one_port_cancel_and_resume_each_others_runs(
    server, live_agent, fake_llm, committed_personas
):
    alpha, bravo = live_agent.persona, committed_personas["bravo"]
    fake_llm.script(
        live_agent.key, *[{"reply": "x " * 80, "chunks": 80, "chunk_delay": 0.05}] * ROUNDS
    )
    with live_server(server) as live:
        done: list[tuple[str, str]] = []
        for _ in range(ROUNDS):
            with httpx.Client(base_url=live.url, timeout=20, headers=auth(alpha.user_key)) as c:
                with c.stream(
                    "POST",
                    f"/agents/{live_agent.agent.id}/execute/stream",
                    json={"input": {"message": "long"}},
                ) as response:
                    assert response.status_code == 200, response.read()
                    location = response.headers["Location"]
                    execution_id = location.split("/")[-2]
                    lines = response.iter_lines()
                    sse_events(lines, stop_after="chunk")
                    # A new connection each time: either process may take it.
                    with httpx.Client(base_url=live.url, timeout=20) as other:
                        foreign = other.post(
                            f"/executions/{execution_id}/cancel", headers=auth(bravo.user_key)
                        )
                        assert foreign.status_code == 404, foreign.text
                        receipt = other.post(
                            f"/executions/{execution_id}/cancel", headers=auth(alpha.user_key)
                        )
                        assert receipt.status_code in (200, 202), receipt.text
                    rest = sse_events(lines)
            assert [e.event for e in rest][-2:] == ["cancelled", "message"], rest[-3:]
            done.append((execution_id, location))
        # Resumed from fresh connections: the whole stored stream, from any process.
        for execution_id, location in done:
            with httpx.Client(base_url=live.url, timeout=20) as c:
                with c.stream("GET", location, headers=auth(alpha.user_key)) as replay:
                    assert replay.status_code == 200
                    kinds = [e.event for e in sse_events(replay.iter_lines()) if e.event != ":"]
                assert kinds[0] == "execution.started" and kinds[-2:] == ["cancelled", "message"]
                hidden = c.get(f"/executions/{execution_id}", headers=auth(bravo.user_key))
                assert hidden.status_code == 404
