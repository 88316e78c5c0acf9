"""The SSRF guard: at URL-check time, and again when a connection is opened."""

from __future__ import annotations

import socket

import httpx
import pytest

from agents.providers import (
    ChatRequest,
    ErrorKind,
    Message,
    ProviderError,
    complete,
    get_provider,
    ssrf,
)
from agents.providers.http import get_client
from agents.providers.ssrf import UnsafeURL, check_url, parse_ipv4_any_notation

REQUEST = ChatRequest(model="m", messages=(Message("user", "hi"),))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://2130706433/",  # decimal
        "http://0x7f000001/",  # hex
        "http://0177.0.0.1/",  # octal
        "http://0x7f.1/",  # mixed short form
        "http://127.1/",  # short form
        "http://127.0.0.1.:8080/",  # trailing dot
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
        "http://[::ffff:7f00:1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",  # carrier-grade NAT
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://[fe80::1%25eth0]/",
        "http://[fc00::1]/",
        "http://0.0.0.0/",
        "http://0/",
        "http://[::]/",
        "http://224.0.0.1/",  # multicast
        "http://[ff02::1]/",
        "http://240.0.0.1/",  # reserved
        "http://255.255.255.255/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./",
        "http://localhost:11434/",
        "http://api.localhost/",
        "http://1.2.3.4.5/",  # numeric but not an address
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://user:secret@example.com/",
        "not a url",
    ],
)
def test_unsafe_urls_are_refused(url):
    with pytest.raises(UnsafeURL):
        check_url(url, resolve=False)


@pytest.mark.parametrize(
    ("notation", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("192.168.257", "192.168.1.1"),
        ("example", None),
    ],
)
def test_ipv4_notations_parse_like_inet_aton(notation, expected):
    parsed = parse_ipv4_any_notation(notation)
    assert (str(parsed) if parsed else None) == expected


@pytest.mark.parametrize(
    "url", ["https://8.8.8.8/v1", "https://[2001:4860:4860::8888]/", "http://1.1.1.1:8080"]
)
def test_public_addresses_pass(url):
    check_url(url)


def fake_dns(monkeypatch, answers: dict[str, list[str]]) -> None:
    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "not found")
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port),
            )
            for ip in answers[host]
        ]

    async def agetaddrinfo(host, port, *args, **kwargs):
        return getaddrinfo(host, port)

    monkeypatch.setattr(ssrf.socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(ssrf.anyio, "getaddrinfo", agetaddrinfo)


def test_names_resolving_to_private_addresses_are_refused(monkeypatch):
    fake_dns(
        monkeypatch,
        {
            "rebind.test": ["127.0.0.1"],
            "mixed.test": ["8.8.8.8", "10.0.0.7"],
            "public.test": ["8.8.8.8", "2001:4860:4860::8888"],
        },
    )

    with pytest.raises(UnsafeURL, match=r"127\.0\.0\.1"):
        check_url("https://rebind.test/v1")
    # Every address counts, not just the first.
    with pytest.raises(UnsafeURL, match=r"10\.0\.0\.7"):
        check_url("https://mixed.test/v1")
    with pytest.raises(UnsafeURL, match="does not resolve"):
        check_url("https://missing.test/v1")
    check_url("https://public.test/v1")


def test_localhost_resolves_to_loopback_and_is_refused():
    with pytest.raises(UnsafeURL):
        check_url("http://localhost:11434")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://localhost:11434", ["localhost"]),
        ("http://LOCALHOST.:11434", ["localhost"]),
        ("http://127.0.0.1:11434", ["127.0.0.1"]),
        ("http://10.1.2.3/", ["10.0.0.0/8"]),
        ("http://[::ffff:10.1.2.3]/", ["10.0.0.0/8"]),
        ("http://[fd12::1]/", ["fd12::/16"]),
    ],
)
def test_allow_list_lets_operators_through(url, allowed):
    check_url(url, allowed=allowed)


def test_allow_list_is_not_wider_than_written():
    with pytest.raises(UnsafeURL):
        check_url("http://10.1.2.3/", allowed=["192.168.0.0/16"])
    with pytest.raises(UnsafeURL):
        check_url("http://169.254.169.254/", allowed=["localhost"])


def test_allow_listed_name_may_resolve_anywhere(monkeypatch):
    fake_dns(monkeypatch, {"ollama.internal": ["10.9.8.7"]})
    check_url("http://ollama.internal:11434", allowed=["ollama.internal"])
    with pytest.raises(UnsafeURL):
        check_url("http://ollama.internal:11434")


async def test_provider_refuses_a_private_base_url(make_config, fake_llm, api_key):
    provider = get_provider(make_config("openai", allowed_private=()))

    with pytest.raises(ProviderError) as info:
        await complete(provider, REQUEST)

    assert info.value.kind is ErrorKind.BLOCKED_URL
    assert not info.value.retryable
    assert fake_llm.requests(api_key) == []


async def test_connect_time_guard_catches_dns_rebinding(
    monkeypatch, make_config, fake_llm, api_key
):
    # The name passes the syntactic check but resolves, at connect time, to loopback.
    fake_dns(monkeypatch, {"rebind.test": ["127.0.0.1"]})
    port = httpx.URL(fake_llm.url).port
    config = make_config("openai", base_url=f"http://rebind.test:{port}/v1", allowed_private=())

    with pytest.raises(ProviderError) as info:
        await complete(get_provider(config), REQUEST)

    assert info.value.kind is ErrorKind.BLOCKED_URL
    assert fake_llm.requests(api_key) == []


async def test_connect_time_guard_without_any_url_check(make_config, fake_llm, api_key):
    # Even a caller that skips check_url entirely cannot reach a private address.
    client = get_client(make_config("openai", allowed_private=()))
    with pytest.raises(UnsafeURL):
        await client.get(f"{fake_llm.url}/v1/models")
    with pytest.raises(UnsafeURL):
        await client.get(fake_llm.url.replace("127.0.0.1", "2130706433") + "/v1/models")


async def test_connect_time_guard_connects_to_the_validated_address(
    monkeypatch, make_config, fake_llm, api_key
):
    fake_dns(monkeypatch, {"llm.internal": ["127.0.0.1"]})
    port = httpx.URL(fake_llm.url).port
    config = make_config("openai", base_url=f"http://llm.internal:{port}/v1")  # 127.0.0.1 allowed

    result = await complete(get_provider(config), REQUEST)

    assert result.text == "Echo: hi"
    # The Host header still names the original host (TLS SNI would too).
    assert fake_llm.requests(api_key)[0]["headers"]["host"] == f"llm.internal:{port}"
