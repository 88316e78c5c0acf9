"""Every upstream failure becomes a ProviderError of the right kind, without the API key."""

from __future__ import annotations

import asyncio
import socket

import pytest

from agents.providers import (
    ChatRequest,
    ErrorKind,
    Message,
    ProviderError,
    TextDelta,
    complete,
    get_provider,
)
from tests.providers.conftest import KINDS

REQUEST = ChatRequest(model="test-model", messages=(Message("user", "hello there"),))


async def fails(provider, request: ChatRequest = REQUEST) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await complete(provider, request)
    return info.value


def assert_no_secret(error: ProviderError, api_key: str) -> None:
    for text in (str(error), repr(error), error.message):
        assert api_key not in text


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("step", "expected", "status"),
    [
        ({"status": 429, "retry_after": 2}, ErrorKind.RATE_LIMIT, 429),
        ({"status": 500}, ErrorKind.SERVER_ERROR, 500),
        ({"status": 503}, ErrorKind.SERVER_ERROR, 503),
        ({"status": 401}, ErrorKind.AUTHENTICATION, 401),
        ({"status": 403}, ErrorKind.AUTHENTICATION, 403),
        ({"status": 400}, ErrorKind.INVALID_REQUEST, 400),
        ({"status": 404}, ErrorKind.INVALID_REQUEST, 404),
        ({"status": 302}, ErrorKind.BLOCKED_URL, 302),
        ({"malformed": True}, ErrorKind.MALFORMED_RESPONSE, None),
        ({"reset_mid_stream": True, "chunks": 6}, ErrorKind.NETWORK_ERROR, None),
    ],
)
async def test_fault_maps_to_error_kind(
    kind, step, expected, status, make_config, fake_llm, api_key
):
    fake_llm.script(api_key, step)
    error = await fails(get_provider(make_config(kind)))

    assert error.kind is expected
    assert error.status_code == status
    assert_no_secret(error, api_key)
    if expected is ErrorKind.RATE_LIMIT:
        assert error.retry_after == 2.0
        assert error.retryable


@pytest.mark.parametrize("kind", KINDS)
async def test_hang_after_headers_times_out(kind, make_config, fake_llm, api_key):
    fake_llm.script(api_key, {"hang_after_headers": True})
    provider = get_provider(make_config(kind, read_timeout=0.3))

    started = asyncio.get_running_loop().time()
    error = await fails(provider)

    assert error.kind is ErrorKind.TIMEOUT
    assert asyncio.get_running_loop().time() - started < 2
    fake_llm.wait_for(api_key, lambda r: r["client_closed"])


@pytest.mark.parametrize("kind", KINDS)
async def test_connection_refused_is_a_network_error(kind, make_config, api_key):
    with socket.socket() as sock:  # find a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}" + ("/v1" if kind == "openai" else "")
    error = await fails(get_provider(make_config(kind, base_url=base)))

    assert error.kind is ErrorKind.NETWORK_ERROR
    assert error.retryable
    assert_no_secret(error, api_key)


@pytest.mark.parametrize("kind", KINDS)
async def test_key_echoed_by_the_vendor_is_redacted(kind, make_config, fake_llm, api_key):
    fake_llm.script(api_key, {"status": 401, "message": f"Incorrect API key provided: {api_key}"})
    error = await fails(get_provider(make_config(kind)))

    assert error.kind is ErrorKind.AUTHENTICATION
    assert "Incorrect API key provided: [redacted]" in error.message
    assert_no_secret(error, api_key)


@pytest.mark.parametrize(
    ("kind", "error_type", "expected"),
    [
        ("anthropic", "overloaded_error", ErrorKind.SERVER_ERROR),
        ("anthropic", "rate_limit_error", ErrorKind.RATE_LIMIT),
        ("openai", "rate_limit_exceeded", ErrorKind.RATE_LIMIT),
        ("openai", "invalid_request_error", ErrorKind.INVALID_REQUEST),
        ("google", "UNAVAILABLE", ErrorKind.SERVER_ERROR),
        ("ollama", "error", ErrorKind.SERVER_ERROR),
    ],
)
async def test_error_inside_the_stream(kind, error_type, expected, make_config, fake_llm, api_key):
    fake_llm.script(api_key, {"stream_error": error_type})
    error = await fails(get_provider(make_config(kind)))

    assert error.kind is expected
    assert_no_secret(error, api_key)


@pytest.mark.parametrize("kind", KINDS)
async def test_stream_cut_short_cleanly_is_malformed(kind, make_config, fake_llm, api_key):
    # A complete HTTP body that lacks the vendor's terminator ([DONE], message_stop, ...).
    fake_llm.script(api_key, {"truncate": True, "chunks": 4})
    error = await fails(get_provider(make_config(kind)))

    assert error.kind is ErrorKind.MALFORMED_RESPONSE


# Only these two stream arguments as JSON text; Gemini and Ollama send objects.
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_invalid_tool_arguments_are_malformed(kind, make_config, fake_llm, api_key):
    fake_llm.script(api_key, {"tool_calls": [{"name": "f", "raw_arguments": '{"city": Paris'}]})
    error = await fails(get_provider(make_config(kind)))

    assert error.kind is ErrorKind.MALFORMED_RESPONSE
    assert "'f'" in error.message


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_consumer_cancellation_closes_upstream(kind, how, make_config, fake_llm, api_key):
    fake_llm.script(api_key, {"reply": " ".join(["word"] * 20), "chunks": 20, "chunk_delay": 0.5})
    stream = get_provider(make_config(kind)).stream(REQUEST)

    if how == "aclose":
        async for event in stream:
            if isinstance(event, TextDelta):
                break
        await stream.aclose()
    else:
        first_delta = asyncio.Event()

        async def consume() -> None:
            async for event in stream:
                if isinstance(event, TextDelta):
                    first_delta.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first_delta.wait(), 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    # The fake is mid-way through a 10 s reply; it must see the client go away at once.
    elapsed = fake_llm.wait_for(api_key, lambda r: r["client_closed"], timeout=1.0)
    assert elapsed < 1.0
    assert not fake_llm.requests(api_key)[-1]["completed"]


async def test_timeout_around_the_consumer_closes_upstream(make_config, fake_llm, api_key):
    fake_llm.script(api_key, {"reply": "slow " * 10, "chunks": 10, "chunk_delay": 1.0})
    provider = get_provider(make_config("openai"))

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await complete(provider, REQUEST)

    fake_llm.wait_for(api_key, lambda r: r["client_closed"], timeout=1.0)
