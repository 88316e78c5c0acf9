"""The client address in audit entries: ``X-Forwarded-For`` counts only when a configured proxy
sent it, and an address that does not parse never costs the request or its audit row."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django_tenants.utils import schema_context

from config.env import env_networks
from tenants.audit.models import AuditLog
from tenants.audit.services import client_address, scope_meta


def create_key(alpha, **meta: str):
    """``POST /api-keys`` as alpha's admin with the given WSGI environ (REMOTE_ADDR, headers)."""
    return Client().post(
        "/api-keys",
        {"name": "from-somewhere", "role": "readonly"},
        content_type="application/json",
        HTTP_HOST="localhost",
        HTTP_AUTHORIZATION=f"Bearer {alpha.admin_key}",
        **meta,
    )


def audited_creation(alpha, response) -> AuditLog:
    assert response.status_code == 201, response.content
    with schema_context(alpha.schema):
        return AuditLog.objects.get(action="api_key.create", target_id=response.json()["id"])


# ---- the rule ----


def test_forwarded_for_is_ignored_without_trusted_proxies(settings):
    settings.TRUSTED_PROXIES = []
    meta = {"REMOTE_ADDR": "198.51.100.4", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    assert client_address(meta) == "198.51.100.4"


def test_forwarded_for_is_ignored_from_a_peer_that_is_not_a_trusted_proxy(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    meta = {"REMOTE_ADDR": "198.51.100.4", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    assert client_address(meta) == "198.51.100.4"


@pytest.mark.parametrize(
    ("trusted", "forwarded", "expected"),
    [
        # the right-most address that is not a trusted proxy, whatever the client put left of it
        (["10.0.0.1"], "1.1.1.1, 203.0.113.9", "203.0.113.9"),
        (["10.0.0.0/8"], "1.1.1.1, 203.0.113.9, 10.2.3.4", "203.0.113.9"),
        (["10.0.0.0/8", "192.0.2.0/24"], "203.0.113.9,192.0.2.7 ,10.9.9.9", "203.0.113.9"),
        # every hop a trusted proxy: the left-most one is the best we know
        (["10.0.0.0/8"], "10.1.1.1, 10.2.2.2", "10.1.1.1"),
        # IPv6, ports, zone ids and IPv4-mapped addresses are normalised
        (["10.0.0.0/8"], "[2001:db8::1]:4711", "2001:db8::1"),
        (["10.0.0.0/8"], "203.0.113.9:5555", "203.0.113.9"),
        (["10.0.0.0/8"], "::ffff:203.0.113.9", "203.0.113.9"),
        (["10.0.0.0/8"], "fe80::1%eth0", "fe80::1"),
    ],
)
def test_trusted_proxies_hand_over_the_address_they_saw(settings, trusted, forwarded, expected):
    settings.TRUSTED_PROXIES = trusted
    assert client_address({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": forwarded}) == (
        expected
    )


@pytest.mark.parametrize(
    "meta",
    [
        {"REMOTE_ADDR": "not-an-address"},
        {"REMOTE_ADDR": ""},
        {},
        {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "1.1.1.1, <script>, 10.0.0.2"},
        {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "999.1.1.1"},
        {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "1.1.1.1,,"},
    ],
)
def test_an_address_that_does_not_parse_is_none(settings, meta):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_address(meta) is None


def test_websocket_scope_goes_through_the_same_rule(settings):
    scope = {
        "client": ["10.0.0.1", 51234],
        "headers": [(b"host", b"alpha.localhost"), (b"x-forwarded-for", b"203.0.113.9")],
    }
    settings.TRUSTED_PROXIES = []
    assert client_address(scope_meta(scope)) == "10.0.0.1"
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_address(scope_meta(scope)) == "203.0.113.9"
    assert client_address(scope_meta({"client": None, "headers": []})) is None


def test_trusted_proxies_setting_refuses_what_is_not_an_address_or_network(monkeypatch):
    monkeypatch.setenv("X_PROXIES", "10.0.0.0/8, 192.0.2.1 ,2001:db8::/32")
    assert env_networks("X_PROXIES") == ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]
    for bad in ("10.0.0.0/33", "proxy.internal", "10.0.0.1/8"):
        monkeypatch.setenv("X_PROXIES", bad)
        with pytest.raises(ImproperlyConfigured, match="X_PROXIES"):
            env_networks("X_PROXIES")
    monkeypatch.delenv("X_PROXIES")
    assert env_networks("X_PROXIES") == []


# ---- through a request: what an operator reads in the audit log ----


def test_audit_entry_keeps_the_peer_address_when_no_proxy_is_trusted(alpha, settings):
    settings.TRUSTED_PROXIES = []
    response = create_key(alpha, REMOTE_ADDR="198.51.100.4", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert audited_creation(alpha, response).ip_address == "198.51.100.4"


def test_audit_entry_takes_the_client_from_a_trusted_proxy(alpha, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    response = create_key(
        alpha, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9, 10.4.4.4"
    )
    assert audited_creation(alpha, response).ip_address == "203.0.113.9"


@pytest.mark.parametrize(
    ("meta", "raw"),
    [
        ({"REMOTE_ADDR": "garbage-peer"}, "garbage-peer"),
        ({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "1.1.1.1, x" * 200}, "x"),
        ({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "fe80::zz"}, "fe80::zz"),
    ],
)
def test_unparsable_address_is_stored_null_and_the_request_still_succeeds(
    alpha, settings, meta, raw
):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    entry = audited_creation(alpha, create_key(alpha, **meta))
    assert entry.ip_address is None
    assert entry.details["client_unparsed"] == raw


def test_unparsable_address_on_a_failed_login_is_still_audited(api, alpha, settings):
    settings.TRUSTED_PROXIES = []
    forged = alpha.user_key[:-4] + ("AAAA" if not alpha.user_key.endswith("AAAA") else "BBBB")
    response = Client().get(
        "/auth/whoami",
        HTTP_HOST="localhost",
        HTTP_AUTHORIZATION=f"Bearer {forged}",
        REMOTE_ADDR="::not:an:address::",
    )
    assert response.status_code == 401
    with schema_context(alpha.schema):
        entry = AuditLog.objects.filter(action="auth.failure").latest("id")
    assert entry.ip_address is None and entry.details["reason"].startswith("wrong secret")
