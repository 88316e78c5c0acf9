"""Structured logs from live processes: every line is JSON and names the request, tenant,
principal and execution; the request id reaches the provider and the background run; prompts
and outputs stay out of the logs unless the tenant's ``log_content`` is on."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import auth, llm_agent_for
from tests.conftest import live_env
from tests.observability.conftest import (
    json_lines,
    logged_server,
    set_log_content,
    wait_for_line,
)

pytestmark = pytest.mark.django_db(transaction=True)


def ended(execution_id: str):
    return lambda line: (
        line.get("execution_id") == execution_id
        and str(line.get("event", "")).startswith("execution ended")
    )


def test_rest_run_lines_are_json_with_ids_and_no_content(
    committed_personas, fake_llm, settings, tmp_path: Path, log_content_off
):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    alpha, bravo = committed_personas["alpha"], committed_personas["bravo"]
    agent = llm_agent_for(alpha, fake_llm)
    prompt, reply = f"CANARY-PROMPT-{uuid.uuid4().hex}", f"CANARY-OUTPUT-{uuid.uuid4().hex}"
    with logged_server(tmp_path / "web.log", LOG_FORMAT="json") as server:
        fake_llm.script(agent.key, {"reply": reply})
        answer = httpx.post(
            f"{server.url}/agents/{agent.agent.slug}/execute",
            headers={**auth(alpha.user_key), "X-Request-ID": "obs-rest-1"},
            json={"input": {"message": prompt}},
            timeout=20,
        )
        assert answer.status_code == 200, answer.text
        execution_id = answer.json()["execution_id"]
        line = wait_for_line(server.text, ended(execution_id))
        # The other tenant does not see the run (and its request is logged as its own).
        other = httpx.get(
            f"{server.url}/executions/{execution_id}",
            headers={**auth(bravo.user_key), "X-Request-ID": "obs-rest-bravo"},
        )
        assert other.status_code == 404
    assert line["request_id"] == "obs-rest-1"
    assert line["tenant"] == alpha.schema
    assert line["principal"].startswith("api_key:")
    assert line["level"] == "info" and line["logger"] == "agents.core.run"
    assert "timestamp" in line
    text = server.text()
    lines = json_lines(text)  # every line of the process is JSON
    # The request's own line (config.access) names the caller too.
    access = [
        entry
        for entry in lines
        if entry["logger"] == "config.access" and entry.get("request_id") == "obs-rest-1"
    ]
    assert access and access[0]["event"].startswith(f"POST /agents/{agent.agent.slug}/execute 200")
    assert access[0]["tenant"] == alpha.schema and access[0]["principal"] == line["principal"]
    bravo_lines = [entry for entry in lines if entry.get("request_id") == "obs-rest-bravo"]
    assert bravo_lines and all(entry["tenant"] == bravo.schema for entry in bravo_lines)
    assert prompt not in text and reply not in text
    # The provider was told the same request id.
    sent = fake_llm.requests(agent.key)
    assert sent and sent[-1]["headers"].get("x-request-id") == "obs-rest-1"


def test_log_content_on_writes_prompt_and_output(
    committed_personas, fake_llm, settings, tmp_path: Path, log_content_off
):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    alpha, bravo = committed_personas["alpha"], committed_personas["bravo"]
    ours, theirs = llm_agent_for(alpha, fake_llm), llm_agent_for(bravo, fake_llm)
    with logged_server(tmp_path / "web.log", LOG_FORMAT="json") as server:
        set_log_content(alpha, True)
        # Until the change has reached the server (NOTIFY): alpha's line carries the prompt.
        deadline = time.monotonic() + 10
        while True:
            prompt, reply = f"CANARY-IN-{uuid.uuid4().hex}", f"CANARY-OUT-{uuid.uuid4().hex}"
            fake_llm.script(ours.key, {"reply": reply})
            answer = httpx.post(
                f"{server.url}/agents/{ours.agent.slug}/execute",
                headers=auth(alpha.user_key),
                json={"input": {"message": prompt}},
                timeout=20,
            )
            assert answer.status_code == 200, answer.text
            line = wait_for_line(server.text, ended(answer.json()["execution_id"]))
            if prompt in line["event"] or time.monotonic() > deadline:
                break
        assert prompt in line["event"] and reply in line["event"], line
        # bravo did not consent: its content stays out.
        prompt_b, reply_b = f"CANARY-IN-{uuid.uuid4().hex}", f"CANARY-OUT-{uuid.uuid4().hex}"
        fake_llm.script(theirs.key, {"reply": reply_b})
        answer = httpx.post(
            f"{server.url}/agents/{theirs.agent.slug}/execute",
            headers=auth(bravo.user_key),
            json={"input": {"message": prompt_b}},
            timeout=20,
        )
        assert answer.status_code == 200, answer.text
        line_b = wait_for_line(server.text, ended(answer.json()["execution_id"]))
        assert line_b["tenant"] == bravo.schema
    text = server.text()
    assert prompt_b not in text and reply_b not in text


def test_background_run_logs_the_request_id_of_the_request_that_queued_it(
    committed_personas, fake_llm, settings, tmp_path: Path, spawn_worker, clean_queue
):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    alpha = committed_personas["alpha"]
    agent = llm_agent_for(alpha, fake_llm)
    prompt, reply = f"CANARY-BG-IN-{uuid.uuid4().hex}", f"CANARY-BG-OUT-{uuid.uuid4().hex}"
    fake_llm.script(agent.key, {"reply": reply})
    worker = spawn_worker(LOG_FORMAT="json")
    with logged_server(tmp_path / "web.log", LOG_FORMAT="json") as server:
        answer = httpx.post(
            f"{server.url}/agents/{agent.agent.slug}/execute",
            headers={**auth(alpha.user_key), "X-Request-ID": "obs-bg-1"},
            json={"input": {"message": prompt}, "execution_config": {"mode": "background"}},
            timeout=20,
        )
        assert answer.status_code in (200, 202), answer.text
        execution_id = answer.json()["execution_id"]
        line: dict[str, Any] = wait_for_line(worker.log.read_text, ended(execution_id))
    assert line["request_id"] == "obs-bg-1"
    assert line["tenant"] == alpha.schema
    assert line["principal"].startswith("api_key:")
    assert "mode=background" in line["event"]
    worker_text = worker.log.read_text(errors="replace")
    json_lines(worker_text)
    for text in (worker_text, server.text()):
        assert prompt not in text and reply not in text
    sent = fake_llm.requests(agent.key)
    assert sent and sent[-1]["headers"].get("x-request-id") == "obs-bg-1"


def test_console_format_is_readable_and_keeps_the_ids():
    import io
    import logging

    from structlog.contextvars import clear_contextvars

    from config.logs import bind_caller, bind_request, logging_config

    entry = dict(logging_config(fmt="console", level="INFO")["formatters"]["structured"])
    factory = entry.pop("()")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(factory(**entry))
    log = logging.getLogger("tests.observability.console")
    log.addHandler(handler)
    log.propagate = False
    try:
        bind_request("console-1")
        bind_caller(tenant="t_alpha", principal="api_key:abc")
        log.warning("hello %s", "there")
    finally:
        clear_contextvars()
        log.removeHandler(handler)
    line = stream.getvalue()
    assert not line.lstrip().startswith("{")
    assert "hello there" in line and "request_id=console-1" in line and "tenant=t_alpha" in line


def test_a_bad_log_format_is_refused():
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run(
        [sys.executable, "-c", "import config.test_settings"],
        cwd=ROOT,
        env={**live_env(), "LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "LOG_FORMAT must be json or console" in done.stderr
