"""Structured logs: every line one JSON object (or a readable line in development).

structlog renders both its own loggers and every stdlib ``logging.getLogger(__name__)`` line
(through ``ProcessorFormatter``), so the platform's modules keep using the stdlib logger and
still get the same fields: ``timestamp``, ``level``, ``logger``, ``event`` (the message) and,
for errors, ``exception``; plus whatever is bound in the current context:

- ``request_id``: bound by ``config.middleware.RequestIdMiddleware`` for each HTTP request and
  by the core for a run from the execution's stored request id (so a background run logs the
  id of the request that queued it);
- ``tenant`` (schema name) and ``principal`` (the audit actor): bound where
  ``tenants.access.resolve_caller`` resolves the caller, and by the core for every run;
- ``execution_id``: bound by ``agents.core.run.run_claimed`` while a run executes.

Context lives in ``contextvars``: it follows asyncio tasks and asgiref's ``sync_to_async``
threads, and a task started later (a detached stream run) starts from its own context.

Prompts and model outputs are never put into a log line unless the tenant's ``log_content`` is
on (``agents.core.run``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars, reset_contextvars
from structlog.types import Processor

LogFormat = Literal["json", "console"]

# Run on every line, structlog's and the stdlib's alike, before rendering.
SHARED_PROCESSORS: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.PositionalArgumentsFormatter(),
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def renderer(fmt: LogFormat) -> Processor:
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer()


def formatter_config(fmt: LogFormat) -> dict[str, Any]:
    """The ``logging.config`` entry of the formatter every handler uses."""
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if fmt == "json":
        # The traceback as one string field (the console renderer prints it itself).
        final.append(structlog.processors.format_exc_info)
    final.append(renderer(fmt))
    return {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": SHARED_PROCESSORS,
        "processors": final,
    }


def configure_structlog() -> None:
    """structlog's own loggers hand their events to the stdlib handlers (one output path)."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def logging_config(*, fmt: LogFormat, level: str) -> dict[str, Any]:
    """The ``LOGGING`` setting: one stream handler with the structured formatter."""
    configure_structlog()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": formatter_config(fmt)},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": "WARNING"},
        "loggers": {
            "config": {"level": level},
            "tenants": {"level": level},
            "agents": {"level": level},
            "workflow_bridge": {"level": level},
            # psycopg_pool warns at every failed connection attempt; web and worker log an
            # outage once when it starts and once when it ends instead (config.database).
            "psycopg.pool": {"level": "ERROR"},
        },
    }


# ---- binding the context ----


def bind_request(request_id: str) -> None:
    """A new request: forget anything bound before (a reused context), bind its id."""
    clear_contextvars()
    bind_contextvars(request_id=request_id)


def bind_caller(*, tenant: str, principal: str | None) -> None:
    """The caller resolved by the access module."""
    if principal:
        bind_contextvars(tenant=tenant, principal=principal)
    else:
        bind_contextvars(tenant=tenant)


@contextmanager
def bound_run(*, execution_id: str, tenant: str, principal: str, request_id: str) -> Iterator[None]:
    """While a run executes; the previous values come back after it (an agent tool's child
    run executes inside its parent's context)."""
    values = {"execution_id": execution_id, "tenant": tenant, "principal": principal}
    if request_id:
        values["request_id"] = request_id
    tokens = bind_contextvars(**values)
    try:
        yield
    finally:
        reset_contextvars(**tokens)


def current_request_id() -> str:
    """The request id bound in this context ("" outside any request or run)."""
    return str(structlog.contextvars.get_contextvars().get("request_id") or "")
