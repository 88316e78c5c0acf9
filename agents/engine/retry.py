"""Retry policy: which failures are retried and how long to wait between attempts."""

from __future__ import annotations

import random
from collections.abc import Callable

from agents.engine.errors import INVALID_OUTPUT
from agents.engine.types import RetryConfig
from agents.providers.base import ErrorKind

# Failures of the model's reply (not of the provider) are always worth another try.
ALWAYS_RETRIED: frozenset[str] = frozenset({INVALID_OUTPUT})
# How a broken stream shows: cut off (network_error), or truncated / invalid JSON
# (malformed_response).
STREAM_BREAK_KINDS: frozenset[str] = frozenset(
    {ErrorKind.NETWORK_ERROR, ErrorKind.MALFORMED_RESPONSE}
)


def is_retryable(error_kind: str, retry: RetryConfig, *, text_streamed: bool = False) -> bool:
    """True when ``error_kind`` may be retried on the same target under ``retry``.

    A stream that broke before any of its text reached the client is, for the client, a
    connection that failed: it is retried whenever ``network_error`` is, even when the agent
    does not list ``malformed_response``. Once text was streamed, a retry makes the engine
    withdraw that text (a ``reset`` event), so it needs the kind itself to be allowed.
    """
    if error_kind in ALWAYS_RETRIED or error_kind in retry.retry_on_errors:
        return True
    return (
        not text_streamed
        and error_kind in STREAM_BREAK_KINDS
        and ErrorKind.NETWORK_ERROR in retry.retry_on_errors
    )


def backoff_delay(
    failed_attempt: int,
    retry: RetryConfig,
    *,
    retry_after: float | None = None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float | None:
    """Seconds to wait after the ``failed_attempt``-th failure (1-based) before the next try.

    Exponential backoff with full jitter: a uniform draw in ``[0, min(cap, base * 2**(n-1))]``
    (jitter keeps many clients from retrying in lockstep after a shared outage). A provider's
    ``Retry-After`` wins when it is larger. Returns ``None`` when ``Retry-After`` exceeds
    ``max_backoff_seconds``: waiting that long is worse than moving on to a fallback target.
    """
    if failed_attempt < 1:
        raise ValueError("failed_attempt is 1-based")
    cap = max(0.0, retry.max_backoff_seconds)
    if retry_after is not None and retry_after > cap:
        return None
    # Clamp the exponent so a large max_attempts can not overflow the float.
    ceiling = min(cap, max(0.0, retry.backoff_seconds) * 2 ** min(failed_attempt - 1, 32))
    delay = uniform(0.0, ceiling)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay
