"""Background work on the job queue (procrastinate: PostgreSQL-based, durable, no extra
infrastructure). Every task takes the tenant schema as an argument and names it for every
query; a job without a tenant is refused."""

from __future__ import annotations

import logging

from procrastinate.contrib.django import app

from agents.services.executions import execution_run_stored
from tenants.context import require_tenant_schema

logger = logging.getLogger(__name__)

EXECUTIONS_QUEUE = "executions"


@app.task(name="agents.run_execution", queue=EXECUTIONS_QUEUE)
async def run_execution(schema_name: str, execution_id: str) -> None:
    """Run a stored (queued) execution to its terminal state."""
    require_tenant_schema(schema_name)
    execution = await execution_run_stored(schema_name=schema_name, execution_id=execution_id)
    if execution is None:
        logger.info("execution %s had nothing to run (cancelled or already run)", execution_id)


def execution_enqueue(*, schema_name: str, execution_id: str) -> int:
    """Queue a stored execution (sync; joins the caller's transaction, so a rolled-back
    request leaves no job). Returns the job id."""
    require_tenant_schema(schema_name)
    return run_execution.defer(schema_name=schema_name, execution_id=execution_id)
