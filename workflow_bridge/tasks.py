"""The bridge's jobs (procrastinate, found by the worker like ``agents.tasks``): trigger a state
agent, apply a finished run's result. Each names its tenant schema and does its database work
in a sync function inside it; a job for no live tenant is refused."""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from procrastinate.contrib.django import app

from agents.core import queue
from tenants.context import in_schema
from workflow_bridge import bridge, results

logger = logging.getLogger(__name__)


@app.task(name=bridge.TRIGGER_TASK, queue=bridge.BRIDGE_QUEUE)
async def trigger_state_agent(
    schema_name: str, resource_id: str, state_agent_id: int, version: int, trigger: str
) -> str:
    await sync_to_async(queue.require_live_tenant)(schema_name)
    outcome = await in_schema(
        schema_name,
        bridge.trigger,
        schema_name=schema_name,
        resource_id=resource_id,
        state_agent_id=state_agent_id,
        version=version,
        trigger=trigger,
    )
    logger.info("state agent %s for %s: %s", state_agent_id, resource_id, outcome)
    return outcome


@app.task(name=bridge.APPLY_TASK, queue=bridge.BRIDGE_QUEUE)
async def apply_agent_result(schema_name: str, execution_id: str) -> str:
    await sync_to_async(queue.require_live_tenant)(schema_name)
    outcome = await in_schema(
        schema_name, results.apply_result, schema_name=schema_name, execution_id=execution_id
    )
    logger.info("result of %s: %s", execution_id, outcome)
    return outcome
