"""The command-line contracts other work and tests rely on."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django_tenants.utils import schema_context

from tenants.credentials import hash_api_key
from tenants.models import ApiKey, Tenant


def run(*args: str) -> dict:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return json.loads(out.getvalue())


def test_create_tenant_prints_the_contract_and_makes_everything_it_names(db, api):
    result = run(
        "create_tenant",
        "--slug",
        "acme-co",
        "--name",
        "Acme",
        "--domain",
        "acme-co.localhost",
        "--json",
    )
    assert set(result) == {
        "tenant",
        "schema",
        "domain",
        "api_key",
        "admin_username",
        "admin_password",
    }
    assert result["tenant"] == "acme-co" and result["schema"] == "t_acme_co"
    tenant = Tenant.objects.get(slug="acme-co")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema=%s AND table_name='audit_auditlog'",
            [tenant.schema_name],
        )
        assert cursor.fetchone() is not None
    key = ApiKey.objects.get(tenant=tenant)
    assert key.role == "admin" and key.key_hash == hash_api_key(result["api_key"])
    with schema_context(tenant.schema_name):
        operator = get_user_model().objects.get(username=result["admin_username"])
        assert operator.is_superuser and operator.check_password(result["admin_password"])
    with schema_context("public"):
        assert not get_user_model().objects.filter(username=result["admin_username"]).exists()
    assert (
        api(result["api_key"], host="acme-co.localhost").get("/auth/whoami").json()["role"]
        == "admin"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--slug", "Bad Slug", "--name", "X", "--domain", "x.localhost"], "slug:"),
        (["--slug", "alpha", "--name", "X", "--domain", "x2.localhost"], "already exists"),
        (["--slug", "fresh-one", "--name", "X", "--domain", "alpha.localhost"], "domain:"),
        (["--slug", "fresh-two", "--name", "X", "--domain", "localhost"], "domain:"),
    ],
)
def test_create_tenant_refuses_bad_input_clearly(alpha, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_tenant", *args, "--json", stdout=io.StringIO())


def test_create_api_key_prints_key_and_role(alpha, api):
    result = run("create_api_key", "--tenant", "alpha", "--role", "readonly", "--json")
    assert set(result) == {"key", "role"} and result["role"] == "readonly"
    assert api(result["key"]).get("/auth/whoami").json() | {} == {
        **api(result["key"]).get("/auth/whoami").json(),
        "tenant": "alpha",
        "role": "readonly",
    }


def test_create_api_key_for_an_unknown_tenant_fails(db):
    with pytest.raises(CommandError, match="no tenant"):
        call_command("create_api_key", "--tenant", "nobody", "--json", stdout=io.StringIO())
