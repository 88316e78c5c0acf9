"""Seed a fresh database for the outage tests: one tenant, its API keys and an agent that talks
to the fake LLM server. Run in a subprocess pointed at the private cluster (``DATABASE_URL``):

    python -m tests.outage.seed <fake LLM base URL> <provider API key>

Prints one JSON object (see ``OutageSite`` in ``conftest.py``).
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.test_settings")
    django.setup()
    from django_tenants.utils import schema_context

    from agents.services.agents import agent_create
    from agents.services.credentials import credential_save
    from tenants.roles import Role
    from tenants.services import api_key_create, tenant_create

    llm_url, provider_key = argv
    created = tenant_create(
        slug="outage", name="Outage", domain="outage.localhost", actor="tests"
    ).tenant
    keys = {
        role: api_key_create(tenant=created, role=role, name=f"{role} outage", actor="tests").key
        for role in (Role.ADMIN, Role.USER)
    }
    with schema_context(created.schema_name):
        credential = credential_save(
            name="fake", kind="openai", base_url=f"{llm_url}/v1", api_key=provider_key
        )
        agent = agent_create(
            data={
                "slug": "outage-agent",
                "name": "Outage agent",
                "credential": credential,
                "model": "fake-model",
                "retry_backoff_seconds": 0,
            },
            actor="tests",
            schema_name=created.schema_name,
        )
    print(
        json.dumps(
            {
                "schema": created.schema_name,
                "admin_key": keys[Role.ADMIN],
                "user_key": keys[Role.USER],
                "agent_id": str(agent.id),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
