"""The fake LLM server's own surface: control API, plain (non-streaming) wire formats."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


@pytest.fixture
def http(fake_llm):
    with httpx.Client(base_url=fake_llm.url, timeout=5) as client:
        yield client


def test_models_listing(http):
    response = http.get("/v1/models")
    assert response.status_code == 200
    assert {m["id"] for m in response.json()["data"]} >= {"fake-model"}


def test_unknown_step_keys_are_rejected(http, api_key):
    response = http.post("/_control/scripts", json={"key": api_key, "steps": [{"replly": "x"}]})
    assert response.status_code == 400
    assert "replly" in response.json()["error"]


def test_scripts_are_consumed_in_order_then_default_applies(http, fake_llm, api_key):
    fake_llm.script(api_key, {"reply": "one"}, {"reply": "two"})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {api_key}"}

    replies = [
        http.post("/v1/chat/completions", json=body, headers=headers).json()["choices"][0][
            "message"
        ]["content"]
        for _ in range(3)
    ]
    assert replies == ["one", "two", "Echo: hi"]


def test_delete_clears_scripts_and_log(http, fake_llm, api_key):
    fake_llm.script(api_key, {"status": 500})
    http.delete("/_control/scripts", params={"key": api_key})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    response = http.post(
        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 200
    assert len(fake_llm.requests(api_key)) == 1


def test_request_log_never_holds_credentials(http, fake_llm, api_key):
    for headers in (
        {"authorization": f"Bearer {api_key}"},
        {"x-api-key": api_key},
        {"x-goog-api-key": api_key},
    ):
        http.post(
            "/api/chat", json={"model": "m", "messages": [], "stream": False}, headers=headers
        )
    logged = fake_llm.requests(api_key)
    assert len(logged) == 3
    assert all(api_key not in str(entry) for entry in logged)


def test_plain_responses_of_each_dialect(http, api_key):
    auth = {"authorization": f"Bearer {api_key}", "x-api-key": api_key, "x-goog-api-key": api_key}
    openai = http.post(
        "/v1/chat/completions",
        headers=auth,
        json={"model": "m", "messages": [{"role": "user", "content": "a b"}]},
    ).json()
    assert openai["choices"][0]["message"]["content"] == "Echo: a b"
    assert openai["usage"]["total_tokens"] > 0

    anthropic = http.post(
        "/v1/messages",
        headers=auth,
        json={"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "a b"}]},
    ).json()
    assert anthropic["content"] == [{"type": "text", "text": "Echo: a b"}]
    assert anthropic["stop_reason"] == "end_turn"

    gemini = http.post(
        "/v1beta/models/g:generateContent",
        headers=auth,
        json={"contents": [{"role": "user", "parts": [{"text": "a b"}]}]},
    ).json()
    assert gemini["candidates"][0]["content"]["parts"] == [{"text": "Echo: a b"}]
    assert gemini["candidates"][0]["finishReason"] == "STOP"

    ollama = http.post(
        "/api/chat",
        headers=auth,
        json={"model": "l", "stream": False, "messages": [{"role": "user", "content": "a b"}]},
    ).json()
    assert ollama["message"]["content"] == "Echo: a b" and ollama["done"] is True


def test_openai_tool_calls_non_streaming(http, fake_llm, api_key):
    fake_llm.script(api_key, {"tool_calls": [{"name": "f", "arguments": {"x": 1}}]})
    response = http.post(
        "/v1/chat/completions",
        headers={"authorization": f"Bearer {api_key}"},
        json={"model": "m", "messages": [{"role": "user", "content": "go"}]},
    ).json()
    choice = response["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"x": 1}'}


def test_rejects_non_json_bodies(http):
    response = http.post("/v1/chat/completions", content=b"nope")
    assert response.status_code == 400


def test_unknown_routes_404(http):
    assert http.get("/nothing").status_code == 404


def test_step_values_are_type_checked(http, api_key):
    for step in (
        {"chunks": "many"},
        {"latency": None},
        {"tool_calls": [{"name": "f", "arguments": "x"}]},
    ):
        response = http.post("/_control/scripts", json={"key": api_key, "steps": [step]})
        assert response.status_code == 400, step


def test_command_line_entry_point_serves(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "agents.fakellm", "--host", "127.0.0.1", "--port", str(port)],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.05)
        assert response.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=5)
