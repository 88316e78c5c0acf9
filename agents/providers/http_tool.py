"""The ``kind="http"`` tool: calls a tenant-configured HTTP endpoint on the model's behalf.

It lives with the providers, not in the engine, because the engine does no HTTP of its own:
like the provider adapters it goes out through the pooled, SSRF-guarded clients of
:mod:`agents.providers.http`, and no ``httpx`` exception leaves this module (every failure
becomes an error :class:`~agents.engine.tools.ToolOutcome` the model can read).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from agents.engine.tools import ToolCallContext, ToolOutcome
from agents.providers.http import pooled_client
from agents.providers.ssrf import check_url

# What a URL checker is called with: the URL and the operator's allow-list. It raises a
# ValueError (agents.providers.ssrf.UnsafeURL is one) to refuse; it may be sync or async.
UrlChecker = Callable[[str, Sequence[str]], Awaitable[None] | None]

DEFAULT_TOOL_TIMEOUT = 10.0
MAX_TOOL_TIMEOUT = 60.0
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024
# Headers a tool config may not set: they would let a tenant smuggle requests or lie about size.
_FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# Every tool call shares one pool (see agents.providers.http.pooled_client).
TOOL_POOL = "tools"


async def _default_url_checker(url: str, allowed: Sequence[str]) -> None:
    # check_url resolves the host name with a blocking getaddrinfo: keep it off the loop.
    await asyncio.to_thread(check_url, url, allowed=tuple(allowed))


class HttpTool:
    """Runs ``kind="http"`` tools. ``ToolDefinition.config`` keys:

    - ``url`` (required): http(s) URL; checked against SSRF before every call.
    - ``method``: default ``POST``.
    - ``arguments_in``: ``"body"`` (JSON body, default for POST/PUT/PATCH) or ``"query"``
      (default for GET/DELETE/HEAD).
    - ``headers``: extra request headers (e.g. the tenant's API token for that service).
    - ``timeout_seconds``: default 10, at most 60.
    - ``max_response_bytes``: default 256 KiB; a larger response is an error.

    The SSRF allow-list comes only from the operator (``allowed_private``), never from the tool
    config, which tenants write. Redirects are not followed (a redirect to a private address
    would bypass the check). Without an injected ``client`` the tool uses the providers' pooled
    client of the running event loop, whose connections re-validate every resolved address
    (DNS rebinding); an injected client (tests) is used as given.
    """

    def __init__(
        self,
        *,
        client: httpx.AsyncClient | None = None,
        url_checker: UrlChecker | None = None,
        allowed_private: Sequence[str] = (),
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._client = client
        self._url_checker = url_checker or _default_url_checker
        self._allowed = tuple(allowed_private)
        self._max_response_bytes = max_response_bytes

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is not None:
            return self._client
        return pooled_client(TOOL_POOL, self._allowed)

    async def aclose(self) -> None:
        """Close an injected client. Pooled clients are shared; ``aclose_all`` closes them."""
        if self._client is not None:
            await self._client.aclose()

    async def call(
        self, name: str, arguments: dict[str, Any], *, context: ToolCallContext
    ) -> ToolOutcome:
        """Perform the request described by the tool's config."""
        config = context.definition.config
        url = config.get("url")
        if not isinstance(url, str) or not url:
            return ToolOutcome(f"tool {name!r} has no URL configured", is_error=True)
        try:
            checked = self._url_checker(url, self._allowed)
            if inspect.isawaitable(checked):
                await checked
        except ValueError as exc:
            return ToolOutcome(f"blocked_url: the tool URL is not allowed ({exc})", is_error=True)

        method = str(config.get("method", "POST")).upper()
        where = config.get("arguments_in") or (
            "query" if method in {"GET", "DELETE", "HEAD"} else "body"
        )
        headers = {
            str(k): str(v)
            for k, v in dict(config.get("headers") or {}).items()
            if str(k).lower() not in _FORBIDDEN_HEADERS
        }
        timeout = min(float(config.get("timeout_seconds", DEFAULT_TOOL_TIMEOUT)), MAX_TOOL_TIMEOUT)
        limit = min(
            int(config.get("max_response_bytes", self._max_response_bytes)),
            self._max_response_bytes,
        )
        request_kwargs: dict[str, Any] = {"headers": headers, "timeout": timeout}
        if where == "query":
            request_kwargs["params"] = {
                k: v if isinstance(v, str) else json.dumps(v) for k, v in arguments.items()
            }
        else:
            request_kwargs["json"] = arguments

        try:
            async with self._get_client().stream(method, url, **request_kwargs) as response:
                if 300 <= response.status_code < 400:
                    return ToolOutcome(
                        f"HTTP {response.status_code}: redirects are not followed", is_error=True
                    )
                body = bytearray()
                async for piece in response.aiter_bytes():
                    body.extend(piece)
                    if len(body) > limit:
                        return ToolOutcome(
                            f"the tool response exceeds the {limit}-byte limit", is_error=True
                        )
                status = response.status_code
        except httpx.TimeoutException:
            return ToolOutcome(f"the tool did not answer within {timeout:g} s", is_error=True)
        except httpx.HTTPError as exc:
            return ToolOutcome(f"the tool request failed: {type(exc).__name__}", is_error=True)
        except ValueError as exc:
            # The connect-time SSRF guard raises UnsafeURL (a ValueError) through httpx.
            return ToolOutcome(f"blocked_url: the tool URL is not allowed ({exc})", is_error=True)

        text = body.decode("utf-8", errors="replace")
        if status >= 400:
            return ToolOutcome(f"HTTP {status}: {text}", is_error=True)
        return ToolOutcome(text)
