"""Shared HTTP plumbing for provider adapters: pooled clients, error mapping, stream readers.

One ``httpx.AsyncClient`` is kept per (running event loop, origin, allow-list): a client's
connections belong to the loop that opened them, and a client built for one allow-list must
never serve a config with a narrower one. Every client has timeouts, never follows redirects,
ignores proxy/netrc environment variables (a proxy would bypass the SSRF guard, netrc could add
credentials) and connects through :class:`~agents.providers.ssrf.GuardedNetworkBackend`.
"""

from __future__ import annotations

import asyncio
import codecs
import email.utils
import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
from structlog.contextvars import get_contextvars

from agents.providers.base import (
    ChatRequest,
    ErrorKind,
    Finished,
    ProviderConfig,
    ProviderError,
    ProviderEvent,
    ToolCall,
    ToolCallsReady,
    Usage,
    UsageReport,
)
from agents.providers.ssrf import GuardedNetworkBackend, UnsafeURL, check_url

USER_AGENT = "circuit-breaker-agents/0.1"
# A stream larger than this is treated as a broken upstream rather than buffered forever.
MAX_STREAM_BYTES = 32 * 1024 * 1024
MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 64 * 1024

_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=30.0)
_ClientKey = tuple[str, tuple[str, ...]]
# Keyed by id(loop) rather than a WeakKeyDictionary: not every loop implementation (uvloop)
# supports weak references. Entries of closed loops are purged when a client is created.
_clients: dict[int, tuple[asyncio.AbstractEventLoop, dict[_ClientKey, httpx.AsyncClient]]] = {}


def timeout_for(config: ProviderConfig) -> httpx.Timeout:
    return httpx.Timeout(
        connect=config.connect_timeout,
        read=config.read_timeout,
        write=config.write_timeout,
        pool=config.pool_timeout,
    )


def _build_client(allowed: tuple[str, ...]) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(
        limits=_LIMITS, http1=True, http2=False, retries=0, trust_env=False
    )
    pool = getattr(transport, "_pool", None)
    # httpx has no public hook for the network backend; fail loudly if its internals move
    # rather than silently losing the connect-time SSRF check.
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        raise RuntimeError("unsupported httpx/httpcore version: cannot install the SSRF guard")
    pool._network_backend = GuardedNetworkBackend(allowed)
    return httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(10.0),
        headers={"user-agent": USER_AGENT},
    )


def get_client(config: ProviderConfig) -> httpx.AsyncClient:
    """The shared client for ``config``'s origin on the running event loop."""
    url = httpx.URL(config.base_url)
    # One pool per upstream origin: a slow provider can not take every connection.
    return pooled_client(f"{url.scheme}://{url.netloc.decode('ascii')}", config.allowed_private)


def pooled_client(pool: str, allowed_private: Sequence[str] = ()) -> httpx.AsyncClient:
    """The shared client of ``pool`` for this allow-list on the running event loop.

    Provider adapters use one pool per upstream origin; the HTTP tool uses the single pool
    ``"tools"`` (tenants write tool URLs, so a pool per origin would grow without bound). Every
    outbound request of the platform goes through here, so all get the same connection limits,
    no redirects, no proxies from the environment, and the connect-time SSRF guard.
    """
    loop = asyncio.get_running_loop()
    key: _ClientKey = (pool, tuple(sorted(allowed_private)))
    entry = _clients.get(id(loop))
    if entry is None or entry[0] is not loop:
        for loop_id, (other, _) in list(_clients.items()):
            if other.is_closed():
                del _clients[loop_id]
        entry = _clients[id(loop)] = (loop, {})
    client = entry[1].get(key)
    if client is None or client.is_closed:
        client = entry[1][key] = _build_client(key[1])
    return client


async def aclose_all() -> None:
    """Close every pooled client created on the running loop (shutdown, test teardown)."""
    loop = asyncio.get_running_loop()
    entry = _clients.pop(id(loop), None)
    if entry is not None and entry[0] is loop:
        for client in entry[1].values():
            await client.aclose()


# ---- error mapping ----------------------------------------------------------------------


def redact(text: str, config: ProviderConfig) -> str:
    """Remove the API key and header values from text that may reach logs or users."""
    for secret in (config.api_key, *config.extra_headers.values()):
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _vendor_message(body: bytes) -> tuple[str, float | None]:
    """A short human message (and Gemini's retryDelay) from a vendor error body."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:300].decode("utf-8", "replace").strip(), None
    retry: float | None = None
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        for detail in err.get("details") or ():
            delay = isinstance(detail, dict) and detail.get("retryDelay")
            if isinstance(delay, str) and re.fullmatch(r"\d+(\.\d+)?s", delay):
                retry = float(delay[:-1])
        message = err.get("message") or err.get("status") or json.dumps(err)[:300]
    else:
        message = str(err)
    return str(message)[:300], retry


def status_error(
    vendor: str, config: ProviderConfig, status: int, headers: Mapping[str, str], body: bytes
) -> ProviderError:
    """Map a non-2xx upstream response to a :class:`ProviderError`."""
    detail, body_retry = _vendor_message(body)
    message = redact(f"{vendor} returned HTTP {status}: {detail}".rstrip(": "), config)
    if 300 <= status < 400:
        return ProviderError(
            ErrorKind.BLOCKED_URL,
            f"{vendor} answered with a redirect (HTTP {status}); redirects are never followed",
            status_code=status,
        )
    if status == 429:
        retry_ms = headers.get("retry-after-ms")
        retry = float(retry_ms) / 1000 if retry_ms and retry_ms.isdigit() else None
        retry = retry or parse_retry_after(headers.get("retry-after")) or body_retry
        return ProviderError(ErrorKind.RATE_LIMIT, message, status_code=status, retry_after=retry)
    if status in (401, 403) or (
        status == 400 and "API_KEY_INVALID" in body.decode("utf-8", "replace")
    ):
        return ProviderError(ErrorKind.AUTHENTICATION, message, status_code=status)
    if status == 408:
        return ProviderError(ErrorKind.TIMEOUT, message, status_code=status)
    if status >= 500:
        return ProviderError(
            ErrorKind.SERVER_ERROR,
            message,
            status_code=status,
            retry_after=parse_retry_after(headers.get("retry-after")),
        )
    return ProviderError(ErrorKind.INVALID_REQUEST, message, status_code=status)


def transport_error(vendor: str, config: ProviderConfig, exc: Exception) -> ProviderError:
    """Map an httpx exception (or an SSRF refusal) to a :class:`ProviderError`."""
    text = redact(f"{type(exc).__name__}: {exc}".rstrip(": "), config)
    if isinstance(exc, UnsafeURL):
        return ProviderError(ErrorKind.BLOCKED_URL, f"{vendor} URL refused: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(ErrorKind.TIMEOUT, f"{vendor} timed out ({text})")
    if isinstance(exc, httpx.DecodingError):
        return ProviderError(ErrorKind.MALFORMED_RESPONSE, f"{vendor} sent an undecodable body")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ProviderError(ErrorKind.BLOCKED_URL, f"{vendor} URL refused: {text}")
    return ProviderError(ErrorKind.NETWORK_ERROR, f"{vendor} connection failed ({text})")


def guard_url(vendor: str, config: ProviderConfig, url: str) -> None:
    """Cheap pre-flight SSRF check without DNS (the connect-time guard resolves)."""
    try:
        check_url(url, allowed=config.allowed_private, resolve=False)
    except UnsafeURL as exc:
        raise ProviderError(ErrorKind.BLOCKED_URL, f"{vendor} URL refused: {exc}") from None


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


@asynccontextmanager
async def open_stream(
    vendor: str,
    config: ProviderConfig,
    url: str,
    body: dict[str, Any],
    headers: Mapping[str, str],
) -> AsyncIterator[httpx.Response]:
    """POST ``body`` and yield the streaming 2xx response; map every failure, including
    failures raised while the caller reads the body, to :class:`ProviderError`.

    Leaving the block for any reason (end, error, ``aclose``, cancellation) closes the
    response, which closes its connection unless the body was fully read.
    """
    guard_url(vendor, config, url)
    client = get_client(config)
    request_headers = {**headers, **config.extra_headers}
    # The platform's request id (bound in the logging context by the request or the run), so a
    # provider's support can find the call and our logs name the same id.
    request_id = get_contextvars().get("request_id")
    if request_id:
        request_headers["x-request-id"] = str(request_id)
    try:
        async with client.stream(
            "POST", url, json=body, headers=request_headers, timeout=timeout_for(config)
        ) as response:
            if response.status_code >= 300 or response.status_code < 200:
                raw = await _read_capped(response, MAX_ERROR_BODY_BYTES)
                raise status_error(vendor, config, response.status_code, response.headers, raw)
            yield response
    except (httpx.HTTPError, httpx.StreamError, UnsafeURL) as exc:
        raise transport_error(vendor, config, exc) from None
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        # A vendor payload of an unexpected shape surfaces while the caller parses it.
        raise malformed(vendor, f"unexpected payload ({type(exc).__name__})") from None


# ---- stream readers ---------------------------------------------------------------------


def malformed(vendor: str, what: str) -> ProviderError:
    return ProviderError(ErrorKind.MALFORMED_RESPONSE, f"{vendor} sent a malformed stream: {what}")


async def iter_lines(vendor: str, response: httpx.Response) -> AsyncIterator[str]:
    """Decoded lines (without terminators), bounded in line and total size."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    buffer = ""
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > MAX_STREAM_BYTES:
            raise malformed(vendor, "response too large")
        buffer += decoder.decode(chunk)
        lines = buffer.splitlines(keepends=True)
        buffer = lines.pop() if lines and not lines[-1].endswith(("\n", "\r")) else ""
        for line in lines:
            yield line.rstrip("\r\n")
        if len(buffer) > MAX_LINE_BYTES:
            raise malformed(vendor, "line too long")
    buffer += decoder.decode(b"", final=True)
    if buffer:
        yield buffer


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: str


async def iter_sse(vendor: str, response: httpx.Response) -> AsyncIterator[SSEEvent]:
    """Server-sent events (``event:``/``data:`` fields, blank-line separated)."""
    event = ""
    data: list[str] = []
    async for line in iter_lines(vendor, response):
        if not line:
            if data:
                yield SSEEvent(event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield SSEEvent(event or "message", "\n".join(data))


def parse_object(vendor: str, text: str) -> dict[str, Any]:
    """A JSON object from the wire, or a malformed_response error."""
    try:
        value = json.loads(text)
    except ValueError:
        raise malformed(vendor, "invalid JSON") from None
    if not isinstance(value, dict):
        raise malformed(vendor, "expected a JSON object")
    return value


def parse_arguments(vendor: str, name: str, raw: str) -> dict[str, Any]:
    """Tool-call arguments streamed as a JSON string; empty means no arguments."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise malformed(vendor, f"arguments of tool call {name!r} are not valid JSON") from None
    if not isinstance(value, dict):
        raise malformed(vendor, f"arguments of tool call {name!r} are not an object")
    return value


# ---- usage estimation -------------------------------------------------------------------


def estimate_tokens(chars: int) -> int:
    """Roughly four characters per token, the usual rule of thumb for English text."""
    return math.ceil(chars / 4) if chars > 0 else 0


def _calls_chars(calls: Iterable[ToolCall]) -> int:
    return sum(len(c.name) + len(json.dumps(c.arguments)) for c in calls)


def estimate_usage(request: ChatRequest, output_text: str, calls: Iterable[ToolCall] = ()) -> Usage:
    """Usage for a provider that reported none, flagged ``estimated=True``."""
    input_chars = sum(len(m.content) + _calls_chars(m.tool_calls) for m in request.messages)
    return Usage(
        input_tokens=max(1, estimate_tokens(input_chars)),
        output_tokens=estimate_tokens(len(output_text) + _calls_chars(calls)),
        estimated=True,
    )


def stream_error(
    vendor: str, config: ProviderConfig, error_type: str, message: str
) -> ProviderError:
    """Map an error reported inside a 200 stream (``error`` event/chunk) by its type name."""
    kind_by_word = (
        ("rate", ErrorKind.RATE_LIMIT),
        ("overloaded", ErrorKind.SERVER_ERROR),
        ("auth", ErrorKind.AUTHENTICATION),
        ("permission", ErrorKind.AUTHENTICATION),
        ("invalid", ErrorKind.INVALID_REQUEST),
        ("not_found", ErrorKind.INVALID_REQUEST),
        ("timeout", ErrorKind.TIMEOUT),
    )
    lowered = error_type.lower()
    kind = next((k for word, k in kind_by_word if word in lowered), ErrorKind.SERVER_ERROR)
    text = redact(f"{vendor} stream error {error_type}: {message}"[:400], config)
    return ProviderError(kind, text)


def closing_events(
    request: ChatRequest,
    *,
    text: str,
    calls: list[ToolCall],
    usage: Usage | None,
    finish_reason: str | None,
    model: str,
) -> list[ProviderEvent]:
    """The events that end every successful stream: tool calls, usage (estimated when the
    provider sent none), then :class:`Finished`."""
    events: list[ProviderEvent] = []
    if calls:
        events.append(ToolCallsReady(tuple(calls)))
    if usage is None:
        usage = estimate_usage(request, text, calls)
    events.append(UsageReport(usage))
    reason = "tool_calls" if calls else (finish_reason or "stop")
    events.append(Finished(finish_reason=reason, model=model or request.model))
    return events


def new_call_id() -> str:
    """An id for a tool call the provider did not name (Gemini, Ollama)."""
    return f"call_{uuid.uuid4().hex[:24]}"
