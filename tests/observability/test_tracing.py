"""OpenTelemetry: off, nothing of its SDK is loaded; on, a live web server exports one trace per
request to an OTLP/HTTP endpoint, with the server span, database statements and the provider
call linked by trace id."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agents.core.queue import enqueue
from tests.api.conftest import auth, llm_agent_for
from tests.conftest import ROOT, live_env
from tests.observability.conftest import logged_server
from tests.worker.conftest import Scripted, create_queued

SDK_PREFIXES = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.instrumentation")


class Receiver:
    """A tiny OTLP/HTTP collector: keeps every span POSTed to /v1/traces."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.paths: list[str] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.paths.append(self.path)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        received.spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    collector = Receiver()
    yield collector
    collector.close()


def attributes(span: Span) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in span.attributes:
        kind = item.value.WhichOneof("value")
        out[item.key] = getattr(item.value, kind) if kind else None
    return out


@pytest.mark.django_db
def test_without_an_endpoint_nothing_of_the_sdk_is_imported():
    env = live_env()
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    script = (
        "import json, sys, django; django.setup(); import config.asgi; "
        "from opentelemetry import trace; "
        f"print(json.dumps([[m for m in sys.modules if m.startswith({SDK_PREFIXES!r})], "
        "type(trace.get_tracer_provider()).__name__, config.asgi.application.__class__.__name__]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    loaded, provider, app = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == []
    assert provider == "ProxyTracerProvider"  # the API's no-op default
    assert app == "ListenFromTheStart"  # not wrapped in server spans


@pytest.mark.django_db(transaction=True)
def test_a_request_becomes_one_trace_with_db_and_provider_spans(
    committed_personas, fake_llm, settings, tmp_path: Path, receiver: Receiver
):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    alpha, bravo = committed_personas["alpha"], committed_personas["bravo"]
    agent = llm_agent_for(alpha, fake_llm)
    fake_llm.script(agent.key, {"reply": "traced"})
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    route = "POST /agents/<str:agent_id>/execute"
    with logged_server(tmp_path / "web.log", **env) as server:
        answer = httpx.post(
            f"{server.url}/agents/{agent.agent.slug}/execute",
            headers=auth(alpha.user_key),
            json={"input": {"message": "trace me"}},
            timeout=20,
        )
        assert answer.status_code == 200, answer.text
        other = httpx.get(
            f"{server.url}/executions/{answer.json()['execution_id']}",
            headers=auth(bravo.user_key),
        )
        assert other.status_code == 404
        deadline = time.monotonic() + 15
        while not any(s.name == route for s in receiver.spans):
            assert time.monotonic() < deadline, [s.name for s in receiver.spans]
            time.sleep(0.05)
        root = next(s for s in receiver.spans if s.name == route)
        fake_port = fake_llm.url.rsplit(":", 1)[1]

        def provider_calls() -> list[Span]:
            return [
                s
                for s in receiver.spans
                if s.trace_id == root.trace_id
                and s.kind == Span.SPAN_KIND_CLIENT
                and fake_port in json.dumps(attributes(s), default=str)
            ]

        while not provider_calls():
            assert time.monotonic() < deadline, [s.name for s in receiver.spans]
            time.sleep(0.05)
    assert set(receiver.paths) == {"/v1/traces"}
    assert root.kind == Span.SPAN_KIND_SERVER
    assert attributes(root)["http.response.status_code"] == 200
    trace = [s for s in receiver.spans if s.trace_id == root.trace_id]
    statements = [s for s in trace if attributes(s).get("db.system") == "postgresql"]
    assert statements, [s.name for s in trace]
    call = provider_calls()[0]
    assert "/v1/chat/completions" in json.dumps(attributes(call))
    # Every span of the trace hangs off the request's span.
    by_id = {s.span_id: s for s in trace}
    for span in trace:
        top = span
        while top.parent_span_id and top.parent_span_id in by_id:
            top = by_id[top.parent_span_id]
        assert top.span_id == root.span_id, (span.name, top.name)
    # The other tenant's request is a trace of its own.
    lookups = [s for s in receiver.spans if s.name == "GET /executions/<str:execution_id>"]
    assert all(s.trace_id != root.trace_id for s in lookups)


@pytest.mark.django_db(transaction=True)
def test_a_background_job_is_a_span_around_its_provider_call(
    committed_personas,
    fake_llm,
    settings,
    tmp_path: Path,
    receiver: Receiver,
    spawn_worker,
    clean_queue,
):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    alpha = committed_personas["alpha"]
    agent = llm_agent_for(alpha, fake_llm)
    fake_llm.script(agent.key, {"reply": "traced in the background"})
    spawn_worker(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY="100")
    execution_id = create_queued(Scripted(alpha, agent.agent, agent.key))
    enqueue(schema_name=alpha.schema, execution_id=execution_id)
    fake_port = fake_llm.url.rsplit(":", 1)[1]
    deadline = time.monotonic() + 20
    while True:
        jobs = [
            s
            for s in receiver.spans
            if s.name == "job agents.run_execution" and s.kind == Span.SPAN_KIND_CONSUMER
        ]
        calls = [
            s
            for s in receiver.spans
            if jobs
            and s.trace_id == jobs[0].trace_id
            and s.kind == Span.SPAN_KIND_CLIENT
            and fake_port in json.dumps(attributes(s), default=str)
        ]
        if calls:
            break
        assert time.monotonic() < deadline, [s.name for s in receiver.spans]
        time.sleep(0.05)
    assert attributes(jobs[0])["cba.queue"] == "executions"


@pytest.mark.django_db(transaction=True)
def test_a_streamed_run_stays_in_its_requests_trace(
    committed_personas, fake_llm, settings, tmp_path: Path, receiver: Receiver
):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    alpha = committed_personas["alpha"]
    agent = llm_agent_for(alpha, fake_llm)
    fake_llm.script(agent.key, {"reply": "streamed and traced", "chunks": 3})
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    route = "POST /agents/<str:agent_id>/execute/stream"
    fake_port = fake_llm.url.rsplit(":", 1)[1]
    with logged_server(tmp_path / "web.log", **env) as server:
        with httpx.stream(
            "POST",
            f"{server.url}/agents/{agent.agent.slug}/execute/stream",
            headers=auth(alpha.user_key),
            json={"input": {"message": "stream me"}},
            timeout=20,
        ) as answer:
            assert answer.status_code == 200
            body = "".join(answer.iter_text())
        assert "complete" in body
        deadline = time.monotonic() + 15
        while True:
            roots = [s for s in receiver.spans if s.name == route]
            calls = [
                s
                for s in receiver.spans
                if roots
                and s.trace_id == roots[0].trace_id
                and s.kind == Span.SPAN_KIND_CLIENT
                and fake_port in json.dumps(attributes(s), default=str)
            ]
            if calls:
                break
            assert time.monotonic() < deadline, [s.name for s in receiver.spans]
            time.sleep(0.05)
