"""The offline echo provider, get_provider/complete, and the shared HTTP helpers."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time

import pytest

from agents.providers import (
    ChatRequest,
    EchoProvider,
    ErrorKind,
    Finished,
    Message,
    ProviderConfig,
    ProviderError,
    TextDelta,
    UsageReport,
    complete,
    get_provider,
)
from agents.providers.http import aclose_all, get_client, parse_retry_after, redact


def echo_config() -> ProviderConfig:
    # No server behind this URL: the echo provider never touches the network.
    return ProviderConfig(kind="echo", base_url="http://10.255.255.1:1", api_key="sk-echo")


async def test_echo_replies_with_the_last_user_message_in_word_chunks():
    request = ChatRequest(
        model="anything",
        messages=(
            Message("user", "first"),
            Message("assistant", "ok"),
            Message("user", "say this back"),
        ),
    )
    events = [e async for e in get_provider(echo_config()).stream(request)]

    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert deltas == ["echo: ", "say ", "this ", "back"]
    usage = next(e.usage for e in events if isinstance(e, UsageReport))
    assert usage.estimated is True
    assert usage.output_tokens == 5  # 18 chars / 4, rounded up
    assert events[-1] == Finished(finish_reason="stop", model="echo")


async def test_echo_json_mode():
    request = ChatRequest(model="x", messages=(Message("user", "hi there"),), json_mode=True)
    result = await complete(EchoProvider(echo_config()), request)

    assert json.loads(result.text) == {"echo": "hi there"}
    assert result.usage.estimated


async def test_echo_is_cancellable():
    request = ChatRequest(model="x", messages=(Message("user", "word " * 10_000),))
    stream = get_provider(echo_config()).stream(request)
    seen = 0
    async for _ in stream:
        seen += 1
        if seen == 3:
            break
    await stream.aclose()
    assert seen == 3


def test_unknown_kind_is_rejected():
    config = ProviderConfig(kind="mystery", base_url="https://example.com")  # type: ignore[arg-type]
    with pytest.raises(ProviderError) as info:
        get_provider(config)
    assert info.value.kind is ErrorKind.INVALID_REQUEST


async def test_complete_requires_a_finished_event():
    class Truncated:
        config = echo_config()

        async def stream(self, request):
            yield TextDelta("partial")

    with pytest.raises(ProviderError) as info:
        await complete(Truncated(), ChatRequest(model="x", messages=()))
    assert info.value.kind is ErrorKind.MALFORMED_RESPONSE


def test_retry_after_parses_seconds_and_http_dates():
    now = time.time()
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(
        email.utils.formatdate(now + 30, usegmt=True), now=now
    ) == pytest.approx(30, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_redact_removes_key_and_header_values():
    config = ProviderConfig(
        kind="openai",
        base_url="https://x",
        api_key="sk-secret-123",
        extra_headers={"x-org": "org-private-9"},
    )
    assert redact("key sk-secret-123 org org-private-9", config) == "key [redacted] org [redacted]"


async def test_clients_are_shared_per_origin_and_loop_and_closed_by_aclose_all():
    config = ProviderConfig(kind="openai", base_url="https://api.example.com/v1", read_timeout=7)
    other_path = ProviderConfig(kind="openai", base_url="https://api.example.com/v2")
    allow_listed = ProviderConfig(
        kind="openai", base_url="https://api.example.com/v1", allowed_private=("10.0.0.0/8",)
    )

    client = get_client(config)
    assert get_client(other_path) is client
    # A different allow-list must never share a client (and its connect-time guard).
    assert get_client(allow_listed) is not client
    assert client.follow_redirects is False
    assert client.trust_env is False

    await aclose_all()
    assert client.is_closed
    assert get_client(config) is not client


def test_clients_are_not_shared_across_event_loops():
    config = ProviderConfig(kind="openai", base_url="https://api.example.com/v1")

    async def grab():
        client = get_client(config)
        await aclose_all()
        return client

    assert asyncio.run(grab()) is not asyncio.run(grab())
