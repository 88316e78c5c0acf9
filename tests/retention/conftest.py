"""Tenants on plans with (and without) a retention, and executions of any age and status."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import Agent, Execution, ExecutionEvent, IdempotencyRecord
from tests.agents.conftest import make_agent, make_credential
from tests.conftest import Persona
from tests.limits.conftest import plan_on  # noqa: F401  (shared fixture)
from tests.worker.conftest import clean_queue, spawn_worker  # noqa: F401  (shared fixtures)


@dataclass
class Runs:
    """Executions of one tenant, made at a given age."""

    schema: str
    agent: Agent

    def make(
        self,
        *,
        days_old: float,
        status: str = "completed",
        events: int = 2,
        parent: Execution | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        with schema_context(self.schema):
            created_at = timezone.now() - dt.timedelta(days=days_old)
            execution = Execution.objects.create(
                agent=self.agent, agent_version=1, status=status, parent=parent
            )
            Execution.objects.filter(pk=execution.pk).update(created_at=created_at)
            ExecutionEvent.objects.bulk_create(
                ExecutionEvent(execution=execution, seq=n, type="chunk", data={"text": "secret"})
                for n in range(1, events + 1)
            )
            if idempotency_key is not None:
                record = IdempotencyRecord.objects.create(
                    scope="api_key:x",
                    key=idempotency_key,
                    fingerprint="f",
                    method="POST",
                    path="/x",
                    execution_id=execution.pk,
                )
                # Written just before its execution, as the API does.
                IdempotencyRecord.objects.filter(pk=record.pk).update(
                    created_at=created_at - dt.timedelta(milliseconds=5)
                )
            return execution.pk

    def parent_of(self, execution_id: str) -> Execution:
        with schema_context(self.schema):
            return Execution.objects.get(pk=execution_id)

    def ids(self) -> set[str]:
        with schema_context(self.schema):
            return set(Execution.objects.values_list("pk", flat=True))

    def event_owners(self) -> set[str]:
        with schema_context(self.schema):
            return set(ExecutionEvent.objects.values_list("execution_id", flat=True))

    def idempotency_keys(self) -> set[str]:
        with schema_context(self.schema):
            return set(IdempotencyRecord.objects.values_list("key", flat=True))


def runs_for(persona: Persona) -> Runs:
    with schema_context(persona.schema):
        agent = make_agent(make_credential(), persona.schema)
    return Runs(persona.schema, agent)


def wipe(persona: Persona) -> None:
    with schema_context(persona.schema):
        IdempotencyRecord.objects.all().delete()
        ExecutionEvent.objects.all().delete()
        Execution.objects.all().delete()
