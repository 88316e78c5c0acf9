"""Benchmark fixtures, run by ``bench/run.py`` in a subprocess with Django configured.

Creates (if missing) the ``bench`` tenant and ``--extra-tenants`` more, points two openai-kind
credentials at the fake LLM (one per API key, so the fake can be scripted per scenario), makes
one agent per credential, issues a fresh API key for this run, empties the bench tenant's
execution log (so every run starts from the same table sizes) and prints one JSON object.

With ``--limits metered`` the bench tenant gets a plan that sets every limit (so every check,
reservation, spend gate and counter upsert runs) at values no run reaches, and the fake model
gets a price; ``--limits none`` (the default) leaves the tenant without a plan. Comparing the
two is what the limits cost on the hot path.

Usage: ``python bench/setup_db.py --fake-url http://127.0.0.1:PORT [--extra-tenants N]
[--limits none|metered]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

from agents.models import (  # noqa: E402
    Agent,
    Execution,
    ExecutionEvent,
    ModelPrice,
    ProviderCredential,
    UsageCounter,
)
from agents.services.agents import agent_create, agent_update  # noqa: E402
from agents.services.credentials import credential_save  # noqa: E402
from tenants.models import ApiKey, Plan, Tenant  # noqa: E402
from tenants.roles import Role  # noqa: E402
from tenants.services import api_key_create  # noqa: E402

BENCH_SLUG = "bench"
ACTOR = "bench:setup"
# (credential name, fake LLM API key, agent slug): the fake is scripted per API key.
PROFILES = {
    "fast": ("bench-fast", "bench-fast-key", "bench-fast"),
    "stream": ("bench-stream", "bench-stream-key", "bench-stream"),
}
SYSTEM_PROMPT = "You are a benchmark agent. Answer briefly."


def ensure_tenant(slug: str) -> tuple[Tenant, bool]:
    with schema_context("public"):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is not None:
            return tenant, False
        out = io.StringIO()
        call_command(
            "create_tenant",
            slug=slug,
            name=slug.title(),
            domain=f"{slug}.localhost",
            json=True,
            stdout=out,
        )
        return Tenant.objects.get(slug=slug), True


def ensure_agent(profile: str, fake_url: str, schema: str) -> dict[str, str]:
    cred_name, fake_key, agent_slug = PROFILES[profile]
    credential = ProviderCredential.objects.filter(name=cred_name).first()
    credential = credential_save(
        credential=credential,
        name=cred_name,
        kind="openai",
        base_url=f"{fake_url}/v1",
        api_key=fake_key,
    )
    agent = Agent.objects.filter(slug=agent_slug).first()
    config = {
        "slug": agent_slug,
        "name": f"Bench {profile}",
        "credential": cred_name,
        "model": "fake-model",
        "system_prompt": SYSTEM_PROMPT,
        # No retries, no fallbacks: one upstream call per execution, like the direct baseline.
        "retry_max_attempts": 1,
        "timeout_seconds": 30.0,
        "enabled": True,
    }
    if agent is None:
        agent = agent_create(data=config, actor=ACTOR, schema_name=schema)
    else:
        agent = agent_update(agent=agent, changes=config, actor=ACTOR, schema_name=schema)
    return {"agent_id": agent.id, "agent_slug": agent.slug, "fake_key": fake_key}


# Every limit set, none reachable by a bench run: the checks all run, none refuses.
METERED = {
    "name": "Bench metered",
    "max_agents": 1_000,
    "executions_per_day": 100_000_000,
    "tokens_per_day": 2_000_000_000,
    "tokens_per_month": 2_000_000_000,
    "cost_budget": "10000000",
    "budget_period": "month",
    "max_concurrent_executions": 100_000,
    "max_streams_per_tenant": 100_000,
    "max_streams_per_key": 100_000,
    "max_execution_seconds": 3_600,
    "max_tokens_per_call": 100_000,
    "requests_per_minute": 100_000_000,
    "requests_per_minute_per_key": 100_000_000,
    "executions_per_hour": 100_000_000,
    "executions_per_hour_per_key": 100_000_000,
    "allowed_models": ["fake-*"],
    "allowed_providers": ["openai"],
}


def apply_limits(tenant: Tenant, limits: str) -> None:
    with schema_context("public"):
        if limits == "metered":
            plan, _ = Plan.objects.update_or_create(slug="bench-metered", defaults=METERED)
            tenant.plan = plan
        else:
            tenant.plan = None
        tenant.save(update_fields=["plan"])
    with schema_context(tenant.schema_name):
        ModelPrice.objects.filter(model="fake-model", credential=None).delete()
        if limits == "metered":
            ModelPrice.objects.create(
                model="fake-model", input_per_million="1.00", output_per_million="2.00"
            )


def server_facts() -> dict[str, object]:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute("SHOW max_connections")
        max_connections = cursor.fetchone()[0]
        # The tenant template (tenants.schema_template) is no tenant's schema: not counted.
        cursor.execute(
            "SELECT count(*) FROM information_schema.schemata "
            "WHERE schema_name NOT LIKE 'pg\\_%%' AND schema_name <> 'information_schema' "
            "AND schema_name <> %s",
            [settings.TENANT_TEMPLATE_SCHEMA],
        )
        schemas = cursor.fetchone()[0]
    return {"server_version": version, "max_connections": max_connections, "schemas": schemas}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fake-url", required=True)
    parser.add_argument("--extra-tenants", type=int, default=10)
    parser.add_argument("--limits", choices=["none", "metered"], default="none")
    args = parser.parse_args()

    started = time.monotonic()
    created = 0
    tenant, new = ensure_tenant(BENCH_SLUG)
    created += new
    for index in range(1, args.extra_tenants + 1):
        _, new = ensure_tenant(f"bench-extra-{index:02d}")
        created += new
    tenants_seconds = time.monotonic() - started

    with schema_context("public"):
        # One key per run; the previous runs' keys are removed (they were printed once only).
        ApiKey.objects.filter(tenant=tenant, created_by=ACTOR).delete()
        key = api_key_create(tenant=tenant, role=Role.USER, name="bench run", actor=ACTOR).key

    with schema_context(tenant.schema_name):
        agents = {p: ensure_agent(p, args.fake_url, tenant.schema_name) for p in PROFILES}
        # Same table sizes at the start of every run: empty the execution log (bench DB only).
        tables = [
            ExecutionEvent._meta.db_table,
            Execution._meta.db_table,
            UsageCounter._meta.db_table,
        ]
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")

    apply_limits(tenant, args.limits)

    db = settings.DATABASES["default"]
    with schema_context("public"):
        facts = server_facts()
        tenant_count = Tenant.objects.count()
    print(
        json.dumps(
            {
                "api_key": key,
                "tenant": tenant.slug,
                "limits": args.limits,
                "schema": tenant.schema_name,
                "agents": agents,
                "tenants": tenant_count,
                "tenants_created_now": created,
                "tenants_seconds": round(tenants_seconds, 2),
                "postgres": facts,
                "database": {
                    "name": db["NAME"],
                    "host": db["HOST"],
                    "port": db["PORT"],
                    "user": db["USER"],
                    "source": settings.DATABASE.source,
                    "conn_max_age": db.get("CONN_MAX_AGE"),
                    "conn_health_checks": db.get("CONN_HEALTH_CHECKS"),
                    "pool": (db.get("OPTIONS") or {}).get("pool"),
                },
                "settings": {
                    "DEBUG": settings.DEBUG,
                    "LOG_LEVEL": settings.LOG_LEVEL,
                    "MIDDLEWARE": list(settings.MIDDLEWARE),
                    "TENANT_LIMIT_SET_CALLS": getattr(settings, "TENANT_LIMIT_SET_CALLS", None),
                    "CHANNEL_LAYER": settings.CHANNEL_LAYERS["default"]["BACKEND"],
                },
            }
        )
    )


if __name__ == "__main__":
    main()
