"""Tenant-written JSON Schemas can neither make the server fetch a URL nor freeze a worker.

Schemas reach the server twice: when an agent is saved (``validate_agent_config``) and when it
runs (input, output and tool-parameter validation in the engine). Both paths are tested.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agents.engine import ExecutionInput, ToolDefinition, run_agent
from agents.engine.schemas import REGEX_BUDGET_SECONDS
from agents.validation import validate_agent_config
from config.errors import ValidationFailed
from tests.engine.fakes import FakeFactory, make_agent, make_context, reply, tool_request

ROOT = Path(__file__).resolve().parents[2]


# ---- remote references --------------------------------------------------------------------


class SchemaServer:
    """A local HTTP server that would serve a schema, and remembers every request it got."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                body = json.dumps({"type": "string"}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/schema.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def schema_server() -> Iterator[SchemaServer]:
    server = SchemaServer()
    yield server
    server.close()


@pytest.mark.parametrize("where", ["input", "output", "tool"])
async def test_running_an_agent_never_fetches_a_remote_ref(where, schema_server) -> None:
    remote = {"type": "object", "properties": {"name": {"$ref": schema_server.url}}}
    overrides: dict[str, Any] = {}
    if where == "input":
        overrides["input_schema"] = remote
    elif where == "output":
        overrides["output_schema"] = remote
    else:
        overrides["tools"] = (ToolDefinition(name="lookup", parameters=remote),)
    agent = make_agent(**overrides)
    factory = FakeFactory()
    provider = factory.add(agent.provider, tool_request(), reply('{"name": "x"}'))

    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(parameters={"name": "Ada"}),
        provider_factory=factory,
    )

    assert schema_server.requests == []
    assert result.status == "failed"
    assert result.error_code == "invalid_schema"
    assert schema_server.url in (result.error_message or "")
    assert provider.requests == []  # refused before any tokens are spent


def _validate(**config: Any) -> None:
    data = {"slug": "safe", "name": "Safe", "model": "fake-model", **config}
    validate_agent_config(
        data, self_slug=None, agent_exists=lambda slug: False, credential_exists=lambda c: False
    )


@pytest.mark.parametrize(
    ("config", "field", "ref"),
    [
        ({"input_schema": {"$ref": "REMOTE"}}, "input_schema", "REMOTE"),
        ({"output_schema": {"properties": {"a": {"$ref": "REMOTE"}}}}, "output_schema", "REMOTE"),
        (
            {
                "tools": [
                    {
                        "name": "t",
                        "config": {"url": "https://api.example.com/t"},
                        "parameters": {"type": "object", "$defs": {"x": {"$ref": "REMOTE"}}},
                    }
                ]
            },
            "tools[0].parameters",
            "REMOTE",
        ),
        ({"input_schema": {"$ref": "other.json#/a"}}, "input_schema", "other.json#/a"),
        (
            {"input_schema": {"$dynamicRef": "https://example.com/meta"}},
            "input_schema",
            "https://example.com/meta",
        ),
    ],
)
def test_saving_refuses_non_local_refs(config, field, ref, schema_server) -> None:
    config = json.loads(json.dumps(config).replace("REMOTE", schema_server.url))
    ref = ref.replace("REMOTE", schema_server.url)
    with pytest.raises(ValidationFailed) as caught:
        _validate(**config)
    assert caught.value.message.startswith(f"{field}:")
    assert f"$ref {ref!r}" in caught.value.message
    assert schema_server.requests == []


def test_saving_accepts_local_refs_and_refs_inside_data() -> None:
    _validate(
        input_schema={
            "type": "object",
            "$defs": {"name": {"type": "string", "pattern": "^[A-Z]"}},
            "properties": {
                "name": {"$ref": "#/$defs/name"},
                # Data, not a schema: a "$ref" key in it is just a value.
                "kind": {"const": {"$ref": "https://example.com/not-a-schema"}},
            },
        }
    )


@pytest.mark.parametrize(
    ("schema", "pattern"),
    [
        ({"type": "string", "pattern": "(unclosed"}, "(unclosed"),
        ({"type": "object", "patternProperties": {"[z-a]": {}}}, "[z-a]"),
    ],
)
def test_saving_refuses_patterns_that_do_not_compile(schema, pattern) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _validate(output_schema=schema)
    assert caught.value.message.startswith("output_schema:")
    assert pattern in caught.value.message


# ---- catastrophic backtracking -------------------------------------------------------------
#
# Each case runs in a child process with a hard timeout: with an unbounded regex engine the
# child would spin for hours (2**40 steps), so a regression fails the test instead of freezing
# the test run.

EVIL = "a" * 40 + "!"
CASES: dict[str, tuple[dict[str, Any], Any]] = {
    # Python's re needs ~2**40 steps here; the regex package rejects it at once.
    "classic": ({"type": "string", "pattern": "^(a+)+$"}, EVIL),
    # Exponential in the regex package too: stopped by the time budget.
    "pattern": ({"type": "string", "pattern": "^(a|aa)+$"}, EVIL),
    "patternProperties": (
        {"type": "object", "patternProperties": {"^(a|aa)+$": {"type": "integer"}}},
        {EVIL: 1},
    ),
    "additionalProperties": (
        {
            "type": "object",
            "patternProperties": {"^(a|aa)+$": {}},
            "additionalProperties": False,
        },
        {EVIL: 1},
    ),
    "unevaluatedProperties": (
        {
            "type": "object",
            "patternProperties": {"^(a|aa)+$": {}},
            "unevaluatedProperties": False,
        },
        {EVIL: 1},
    ),
    "draft7": (
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "string",
            "pattern": "^(a|aa)+$",
        },
        EVIL,
    ),
}

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from agents.engine import ExecutionInput, InvalidInput, run_agent
    from agents.engine.mapping import validate_input
    from tests.engine.fakes import FakeFactory, make_agent, make_context, reply

    cases = json.loads(sys.argv[1])
    results = {}
    for name, (schema, value) in cases.items():
        started = time.monotonic()
        try:
            validate_input({"value": value}, {"type": "object", "properties": {"value": schema}})
            outcome = "valid"
        except InvalidInput as exc:
            outcome = exc.message
        results[name] = {"input": outcome, "seconds": time.monotonic() - started}

    # The same pattern as an output schema: the run fails at once, not after every retry.
    schema, value = cases["pattern"]
    agent = make_agent(output_schema={"type": "object", "properties": {"value": schema}})
    factory = FakeFactory()
    provider = factory.add(agent.provider, reply(json.dumps({"value": value})), reply("{}"))
    started = time.monotonic()
    result = asyncio.run(run_agent(
        agent=agent, context=make_context(), input=ExecutionInput(message="go"),
        provider_factory=factory,
    ))
    results["output_run"] = {
        "status": result.status, "code": result.error_code, "message": result.error_message,
        "attempts": [a.status for a in result.attempts], "calls": len(provider.requests),
        "seconds": time.monotonic() - started,
    }
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def pattern_results() -> dict[str, dict[str, Any]]:
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(CASES)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("schema validation with a pathological pattern did not finish in 60 s")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_classic_backtracking_pattern_fails_fast_with_a_clear_error(pattern_results) -> None:
    result = pattern_results["classic"]
    assert result["seconds"] < 1.0
    assert "does not match '^(a+)+$'" in result["input"]


@pytest.mark.parametrize(
    "case",
    ["pattern", "patternProperties", "additionalProperties", "unevaluatedProperties", "draft7"],
)
def test_runaway_pattern_is_stopped_by_the_time_budget(case, pattern_results) -> None:
    result = pattern_results[case]
    # The budget plus scheduling slack on a loaded machine; unbounded would be hours.
    assert result["seconds"] < REGEX_BUDGET_SECONDS + 2.0
    assert "did not finish within" in result["input"]
    assert "^(a|aa)+$" in result["input"]


def test_runaway_output_pattern_fails_the_run_without_retrying(pattern_results) -> None:
    run = pattern_results["output_run"]
    assert run["status"] == "failed"
    assert run["code"] == "invalid_output"
    assert "did not finish within" in run["message"]
    assert run["attempts"] == ["failed"]
    assert run["calls"] == 1
    assert run["seconds"] < REGEX_BUDGET_SECONDS + 2.0
