"""OpenTelemetry traces, only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

Off (the variable unset), this module imports nothing of OpenTelemetry's SDK, exporters or
instrumentations and every hook below is a no-op: tracing costs nothing. (The MCP SDK imports
the OpenTelemetry *API* on its own; without an SDK that is a no-op tracer.)

On, a process (``setup``: ``config.asgi`` for the web, ``agents.worker.process.serve`` for a
worker) exports spans over OTLP/HTTP (protobuf) to the endpoint, configured with the standard
``OTEL_*`` variables (``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``,
``OTEL_BSP_SCHEDULE_DELAY`` ...):

- a server span per HTTP request (:class:`AsgiTracing` around the ASGI application, named by
  method and route template once Django has routed it; W3C ``traceparent`` is honoured);
- a span per database statement (psycopg instrumentation);
- a client span per outbound HTTP call, provider calls included (httpx instrumentation);
- a span per job in the worker (:func:`job_span`).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from typing import Any

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"

_enabled = False


def enabled() -> bool:
    return _enabled


def setup(service: str) -> bool:
    """Start exporting this process's spans, if an endpoint is configured. Idempotent."""
    global _enabled
    if _enabled or not os.environ.get(ENDPOINT_VARIABLE):
        return _enabled
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or "circuit-breaker-agents"
    resource = Resource.create(
        {"service.name": name, "service.namespace": "cba", "cba.process": service}
    )
    provider = TracerProvider(resource=resource)
    # The exporter reads the endpoint (adding /v1/traces), headers and timeout from OTEL_*.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    # Statement text only, never parameters (they may hold tenants' data).
    PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _enabled = True
    return True


def carry_into(context: contextvars.Context) -> None:
    """Make the current span the parent of what runs in ``context`` (a fresh context that a
    detached task starts from), so a streamed run's spans stay in its request's trace."""
    if not _enabled:
        return
    from opentelemetry import context as otel_context

    context.run(otel_context.attach, otel_context.get_current())


def name_server_span(method: str, route: str) -> None:
    """Name the current request's server span after its route template (called by the
    metrics middleware, which knows the route; a no-op while tracing is off)."""
    if not _enabled:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)


@contextlib.contextmanager
def job_span(task: str, **attributes: str) -> Iterator[None]:
    """A span around one job of the worker (nothing while tracing is off)."""
    if not _enabled:
        yield
        return
    from opentelemetry import trace

    tracer = trace.get_tracer("cba.worker")
    with tracer.start_as_current_span(
        f"job {task}",
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "procrastinate",
            **{f"cba.{k}": v for k, v in attributes.items()},
        },
    ):
        yield


class AsgiTracing:
    """Around the ASGI application: one server span per HTTP request (WebSocket and lifespan
    pass through), its status from the response. Django's own instrumentation needs the ASGI
    instrumentation package to see requests served over ASGI; this is the part of it we use."""

    def __init__(self, app: Any) -> None:
        from opentelemetry import trace

        self.app = app
        self.tracer = trace.get_tracer("cba.http")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry import propagate, trace
        from opentelemetry.trace import Status, StatusCode

        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method = scope.get("method", "GET")
        with self.tracer.start_as_current_span(
            f"{method} {scope.get('path', '')}",
            context=propagate.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": scope.get("path", ""),
                "url.scheme": scope.get("scheme", "http"),
            },
        ) as span:

            async def traced_send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, traced_send)


def wrap_asgi(app: Any) -> Any:
    """``app`` with server spans when tracing is on; ``app`` itself otherwise."""
    return AsgiTracing(app) if _enabled else app
