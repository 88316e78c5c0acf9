"""The bridge's jobs (procrastinate, found by the worker like ``agents.tasks``): trigger a state
agent, apply a finished run's result, publish workflow events to NATS (and the periodic sweep
that catches up after an outage). Each names its tenant schema and does its database work
in a sync function inside it; a job for no live tenant is refused."""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from procrastinate.contrib.django import app

from agents.core import queue
from tenants.context import in_schema
from workflow_bridge import bridge, nats, results

logger = logging.getLogger(__name__)


@app.task(name=bridge.TRIGGER_TASK, queue=bridge.BRIDGE_QUEUE)
async def trigger_state_agent(
    schema_name: str,
    resource_id: str,
    state_agent_id: int,
    version: int,
    trigger: str,
    actor: str = "",
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
        actor=actor,
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


# ---- NATS JetStream (workflow_bridge.nats; only while NATS_URL is set) ----


@app.task(name=nats.PUBLISH_TASK, queue=nats.PUBLISH_QUEUE)
async def publish_workflow_events(schema_name: str) -> int:
    """Publish a tenant's waiting workflow events to JetStream (deferred after each commit
    that wrote some, and by the sweep; one at a time per tenant through its ``lock``)."""
    await sync_to_async(queue.require_live_tenant)(schema_name)
    published = await nats.publish_pending(schema_name)
    if published:
        logger.info("published %d workflow event message(s) of %s to NATS", published, schema_name)
    return published


async def nats_sweep(timestamp: int) -> list[str]:
    """Periodic (every NATS_SWEEP_SECONDS, one worker at a time): a publish job for every
    tenant with messages still waiting; hourly, published rows past their retention go."""
    if not settings.NATS_URL:
        return []
    purge = timestamp % 3600 < settings.NATS_SWEEP_SECONDS
    return await sync_to_async(nats.sweep)(purge=purge)


_nats_sweep_task = app.task(
    name=nats.SWEEP_TASK, queue=nats.SWEEP_QUEUE, queueing_lock="nats-sweep"
)(nats_sweep)
# Scheduled only where NATS is configured: without it there is nothing to sweep, and a job
# every few seconds would only fill the queue's history.
if settings.NATS_URL:
    app.periodic(cron=f"* * * * * */{settings.NATS_SWEEP_SECONDS}", periodic_id="nats-sweep")(
        _nats_sweep_task
    )
